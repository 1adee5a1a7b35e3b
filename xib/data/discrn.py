"""DisCRn: two inputs of different modalities, a question comparing them, answer "first" or "second".

Built for every unordered pair of image, 3D, audio and video (`PAIRS`): the paper's two (image-3D,
audio-video) and the four it claims but never tests. Every modality's caption names its entity's
kind (`xib.data.world`), so every comparison question can be answered from either input.

Built from the test split (entities no training example shows) as the paper built it, and the same
way from the val split (`data.discrn.select_split`): recipes are chosen on that one, so the test
figures stay unread until the choice is made.
- hard pairs: for an anchor item, a random sample of `candidate_sample` items of the other modality
  (other entities) is embedded with the anchor, and the partner is drawn among the `hard_top_k`
  most similar that have at least one applicable question. In the paper both inputs of a pair come
  with one caption of the whole object or clip (Cap3D for image and 3D, AudioCaps for audio and
  video); here each modality has its own caption, and audio and video captions share no word, so an
  item is described by its entity's captions in *both* modalities of the pair (e.g. "the sound of
  barking. a brown sphere running"). Descriptions are embedded as TF-IDF bags of lower-cased words
  (smoothed idf over every description of the pair, L2-normalised; cosine similarity);
- the question is drawn among `world.applicable_questions` of the pair, with its ground truth;
- balance: each pair, in its natural (m1, m2) order, has a label; swapping the inputs flips both
  the label and the modality order. Each pair goes to whichever of its two orders has room left in
  four equal quotas (m1 first / m2 first x first / second), so labels are exactly 50/50 and both
  modality orders exactly 50/50.
`source=released` instead converts the X-InstructBLIP DisCRn release (LAVIS `DisCRnDataset` files,
objaverse.json and audiocaps.json) into the same schema: xib/data/discrn_released.py. Schema and
layouts: docs/DATA.md.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.data.config import PAIRS
from xib.data.discrn_files import balance_counts, discrn_path
from xib.data.world import KINDS_BY_NAME, Kind, applicable_questions, caption
from xib.errors import DataError, XibError
from xib.io import write_json
from xib.prompts import ANSWERS

if TYPE_CHECKING:
    from xib.config import XibConfig

_WORD = re.compile(r"[a-z0-9]+")


# --- caption embedding -------------------------------------------------------------------------


class TfidfEmbedder:
    """TF-IDF bag of lower-cased words: smoothed idf log((1+n)/(1+df))+1, raw term counts, L2 norm."""

    def __init__(self, corpus: Sequence[str]) -> None:
        docs = [set(_WORD.findall(text.lower())) for text in corpus]
        df = Counter(word for doc in docs for word in doc)
        n = len(docs)
        self.idf = {word: math.log((1 + n) / (1 + count)) + 1.0 for word, count in df.items()}
        self._cache: dict[str, dict[str, float]] = {}

    def embed(self, text: str) -> dict[str, float]:
        if text not in self._cache:
            counts = Counter(_WORD.findall(text.lower()))
            vec = {w: c * self.idf.get(w, 1.0) for w, c in counts.items()}
            norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
            self._cache[text] = {w: v / norm for w, v in vec.items()}
        return self._cache[text]

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.embed(a), self.embed(b)
        if len(vb) < len(va):
            va, vb = vb, va
        return sum(v * vb.get(w, 0.0) for w, v in va.items())


# --- building from the world -------------------------------------------------------------------


@dataclass(frozen=True)
class PoolItem:
    item_id: str
    entity_id: str
    kind: Kind
    caption: str
    media: str


def media_uri(uri: str, manifest_dir: Path, data_dir: Path) -> str:
    """A manifest uri (relative to its manifest's folder) made relative to `paths.data`."""
    if "://" in uri:
        return uri
    container, sep, member = uri.partition("#")
    path = Path(container)
    if not path.is_absolute():
        path = Path(os.path.relpath(manifest_dir / path, data_dir))
    return path.as_posix() + (sep + member if sep else "")


def load_pool(cfg: XibConfig, modality: str, split: str) -> list[PoolItem]:
    """Items of one modality and split whose kind is a world kind (their questions have ground truth)."""
    from xib.data.manifest import manifest_path, read_manifest

    path = manifest_path(cfg, modality, split)
    if not path.is_file():
        raise XibError(f"{path}: no manifest (run `xib world` first, or use data.discrn.source=released)")
    df = read_manifest(path)
    for column in ("id", "entity_id", "kind", "caption", "uri"):
        if column not in df.columns:
            raise DataError(str(path), f"manifest has a {column!r} column")
    data_dir = Path(cfg.paths.data)
    pool = []
    for row in df.itertuples(index=False):
        kind = KINDS_BY_NAME.get(str(row.kind or ""))
        if kind is None or not isinstance(row.caption, str) or not row.caption.strip():
            continue
        pool.append(
            PoolItem(
                str(row.id),
                str(row.entity_id),
                kind,
                row.caption,
                media_uri(str(row.uri), path.parent, data_dir),
            )
        )
    if not pool:
        raise DataError(
            str(path), "DisCRn needs items with a world kind and a caption", detail=f"{len(df)} rows"
        )
    return pool


def _record(
    pair: str, modalities: Sequence[str], first: PoolItem, second: PoolItem, question: Any, label: int
) -> dict:
    return {
        "pair": pair,
        "modalities": list(modalities),
        "sample_ids": [first.item_id, second.item_id],
        "entity_ids": [first.entity_id, second.entity_id],
        "captions": [first.caption, second.caption],
        "properties": {
            "attribute": question.attribute,
            "values": [getattr(first.kind, question.attribute), getattr(second.kind, question.attribute)],
        },
        "question": question.text,
        "label": int(label),
        "answer": ANSWERS[label],
        "media": [first.media, second.media],
    }


def build_pair_from_world(cfg: XibConfig, pair: str, split: str) -> list[dict[str, Any]]:
    """`examples_per_pair` balanced hard examples of one modality pair from one split of the world."""
    from tqdm import tqdm

    dcfg = cfg.data.discrn
    rng = random.Random(f"{dcfg.seed}|{pair}|{split}")
    m1, m2 = PAIRS[pair]
    n = dcfg.examples_per_pair
    if n <= 0 or n % 4:
        raise XibError(f"data.discrn.examples_per_pair={n}: must be a positive multiple of 4 (exact balance)")
    pools = {m1: load_pool(cfg, m1, split), m2: load_pool(cfg, m2, split)}

    def describe(item: PoolItem) -> str:
        return f"{caption(item.kind, m1)}. {caption(item.kind, m2)}"

    embedder = TfidfEmbedder([describe(p) for pool in pools.values() for p in pool])
    # quota[(first modality index, label)]: each of the four cells gets n / 4.
    quota = {(o, y): n // 4 for o in (0, 1) for y in (0, 1)}
    chosen: list[tuple[PoolItem, PoolItem, Any, int, int]] = []  # (x of m1, z of m2, question, order, label)
    seen: set[tuple[str, str, str]] = set()
    attempts, max_attempts = 0, dcfg.max_attempts_per_example * n
    with tqdm(total=n, desc=f"discrn {pair} {split}", unit="ex", leave=False) as bar:
        while len(chosen) < n:
            attempts += 1
            if attempts > max_attempts:
                raise DataError(
                    f"{Path(cfg.paths.data) / 'world'}/{{{m1},{m2}}}/{split}",
                    f"enough {split} items of distinct entities with applicable questions for "
                    f"{n} balanced {pair} examples",
                    detail=f"{len(chosen)} made in {max_attempts} attempts; items {m1}={len(pools[m1])} "
                    f"{m2}={len(pools[m2])}",
                )
            anchor_mod, other_mod = (m1, m2) if attempts % 2 else (m2, m1)
            anchor = rng.choice(pools[anchor_mod])
            others = [p for p in pools[other_mod] if p.entity_id != anchor.entity_id]
            sample = rng.sample(others, min(dcfg.candidate_sample, len(others)))
            scored = [
                (-embedder.similarity(describe(anchor), describe(c)), pos, c)
                for pos, c in enumerate(sample)
                if applicable_questions(anchor.kind, c.kind)
            ]
            if not scored:
                continue
            scored.sort(key=lambda t: (t[0], t[1]))
            partner = rng.choice(scored[: max(1, dcfg.hard_top_k)])[2]
            x, z = (anchor, partner) if anchor_mod == m1 else (partner, anchor)
            question, natural = rng.choice(applicable_questions(x.kind, z.kind))
            key = (x.item_id, z.item_id, question.text)
            if key in seen:
                continue
            # In (m1, m2) order the label is `natural`; swapped, the label flips.
            options = [(o, natural if o == 0 else 1 - natural) for o in (0, 1)]
            options = [c for c in options if quota[c] > 0]
            if not options:
                continue
            rng.shuffle(options)
            cell = max(options, key=lambda c: quota[c])
            quota[cell] -= 1
            seen.add(key)
            chosen.append((x, z, question, cell[0], cell[1]))
            bar.update(1)
    rng.shuffle(chosen)
    records = []
    for x, z, question, order, label in chosen:
        if order == 0:
            records.append(_record(pair, (m1, m2), x, z, question, label))
        else:
            records.append(_record(pair, (m2, m1), z, x, question, label))
    for i, record in enumerate(records):
        record["id"] = f"{pair}-{split}-{i:05d}"
    return records


# --- entry point --------------------------------------------------------------------------------


def discrn_splits(cfg: XibConfig) -> list[str]:
    """The splits `build_discrn` writes: `split` (reported) and, from the world, `select_split`."""
    dcfg = cfg.data.discrn
    select = str(dcfg.select_split or "")
    if dcfg.source != "world" or not select:
        return [dcfg.split]
    if select == dcfg.split:
        raise XibError(f"data.discrn.select_split={select!r}: must differ from data.discrn.split")
    return [select, dcfg.split]


def build_discrn(cfg: XibConfig) -> dict[str, dict[str, Any]]:
    """Write `data/discrn/<pair>/<split>.json` for every pair and split; return counts by pair, split."""
    dcfg = cfg.data.discrn
    if dcfg.source == "released":  # the release's converter: its own module (all files or none written)
        from xib.data.discrn_released import build_released

        return build_released(cfg)
    summary: dict[str, dict[str, Any]] = {}
    for pair in dcfg.pairs:
        if pair not in PAIRS:
            raise XibError(f"data.discrn.pairs: {pair!r} not among {sorted(PAIRS)}")
        if dcfg.source not in ("world", "released"):
            raise XibError(f"data.discrn.source={dcfg.source!r}: must be world or released")
        summary[pair] = {}
        for split in discrn_splits(cfg):
            records = build_pair_from_world(cfg, pair, split)
            write_json(discrn_path(cfg, pair, split), records)
            summary[pair][split] = balance_counts(records)
    return summary


def read_discrn(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A DisCRn file written by `build_discrn` (checked: two inputs, label 0/1 matching the answer)."""
    file = str(path)
    if not Path(path).is_file():
        raise XibError(f"{file}: no DisCRn file (run `xib discrn` first)")
    records = json.loads(Path(path).read_text())
    if not isinstance(records, list):
        raise DataError(file, "DisCRn file is a JSON list")
    for row, r in enumerate(records):
        if len(r.get("modalities", [])) != 2 or len(r.get("captions", [])) != 2:
            raise DataError(file, "each example has two modalities and two captions", row=row)
        if r.get("label") not in (0, 1) or r.get("answer") != ANSWERS[r["label"]]:
            raise DataError(file, "label is 0|1 and answer is its first|second", row=row)
    return records
