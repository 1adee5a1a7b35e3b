"""A tiny but real project for tests and the evaluation benchmark: a tiny Llama saved with
save_pretrained, projection checkpoints saved by `save_projection`, feature caches written by the
feature store's writer, instruction data and DisCRn files in their on-disk formats.

Nothing here is a mock: `run_eval`, the gate and serving read these files through their real code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.data.config import PAIRS

if TYPE_CHECKING:
    from xib.config import XibConfig


KINDS = ("cube", "sphere", "cone", "dog", "cat", "bird", "car")
COLOURS = ("red", "green", "blue", "yellow", "black", "white")
SOUNDS = {"dog": "barks", "cat": "meows", "bird": "sings", "car": "runs"}


def _caption(modality: str, kind: str, colour: str) -> str:
    if modality == "audio":
        return f"a {kind} {SOUNDS.get(kind, 'sings')}"
    if modality == "pc":
        return f"a small {kind}"
    return f"a {colour} {kind}"


def make_tiny_project(
    cfg: XibConfig,
    modalities: tuple[str, ...] = ("image", "pc"),
    items: int = 6,
    discrn_items: int = 8,
    encoder_dim: int = 64,
    tokens: int = 5,
    seed: int = 0,
    real_encoders: bool = False,
    llm_arch: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Write a project under `cfg.paths` for `modalities`; returns the projection checkpoint folders.

    With `real_encoders`, the encoders of `cfg.model.encoders` are built (from `arch`) to record
    their fingerprints and widths in the checkpoints, so the composed model can also read raw media.
    """
    import torch

    from xib.models.checkpoint import new_projection, resolve_qformer_vocab, save_projection
    from xib.models.llm import load_llm
    from xib.models.testing import save_tiny_llm
    from xib.train.features import cache_dir, write_features

    rng = random.Random(seed)
    data, artifacts = Path(cfg.paths.data), Path(cfg.paths.artifacts)
    llm_dir = Path(cfg.model.llm.path)
    if not (llm_dir / "config.json").is_file():
        save_tiny_llm(llm_dir, seed=seed, **dict(llm_arch or {}))  # type: ignore[arg-type]  # sizes only: ints
    llm, tokenizer = load_llm(cfg.model.llm)
    hidden = llm.get_input_embeddings().weight.shape[1]
    vocab = resolve_qformer_vocab(cfg.model.projection, tokenizer)
    split = cfg.eval.split
    views = {"video": 2, "audio": 2}
    checkpoints: dict[str, Path] = {}
    captions: dict[str, dict[str, str]] = {}
    for modality in modalities:
        fingerprint, dim = "", encoder_dim
        if real_encoders:
            from xib.models.encoders import build_encoder

            encoder = build_encoder(modality, cfg.model.encoders[modality])
            fingerprint, dim = encoder.fingerprint(), int(encoder.hidden_size)
        torch.manual_seed(seed + len(checkpoints))
        projection, _ = new_projection(cfg.model, modality, dim, hidden, vocab)
        folder = artifacts / "align" / modality
        save_projection(folder, modality, projection, {"encoder_fingerprint": fingerprint, "step": 0})
        checkpoints[modality] = folder

        generator = torch.Generator().manual_seed(seed + 100 + len(checkpoints))
        ids = [f"{modality}-{i:06d}" for i in range(items)]
        feats = [
            (
                i,
                torch.randn(views.get(modality, 1), tokens, dim, generator=generator),
                torch.ones(views.get(modality, 1), tokens, dtype=torch.bool),
            )
            for i in ids
        ]
        write_features(cache_dir(cfg, modality, split), feats, {"key": f"tiny-{seed}", "modality": modality})

        rows, captions[modality] = _instruction_rows(modality, ids, items, rng)
        path = data / "instruct" / modality / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    _write_discrn(data / "discrn", split, modalities, captions, discrn_items, rng)
    return checkpoints


def _instruction_rows(
    modality: str, ids: list[str], items: int, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Caption, QA and classification records for the tiny items, and each item's caption."""
    rows: list[dict[str, Any]] = []
    captions: dict[str, str] = {}
    for n, item_id in enumerate(ids):
        kind, colour = rng.choice(KINDS), rng.choice(COLOURS)
        cap = _caption(modality, kind, colour)
        captions[item_id] = cap
        base = {"item_id": item_id, "modality": modality, "caption": cap, "source": "tiny"}
        rows.append(
            {
                **base,
                "id": f"{item_id}-c",
                "task": "caption",
                "instruction": "a short description",
                "answer": cap,
            }
        )
        rows.append(
            {**base, "id": f"{item_id}-q", "task": "qa", "instruction": "what is this ?", "answer": kind}
        )
        cands = sorted({kind, *rng.sample(KINDS, 3)})
        rows.append(
            {
                **base,
                "id": f"{item_id}-k",
                "task": "classify",
                "instruction": "what is this ?",
                "answer": kind,
                "candidates": cands,
            }
        )
        if n >= items:
            break
    return rows, captions


def _write_discrn(
    discrn_dir: Path,
    split: str,
    modalities: tuple[str, ...],
    captions: dict[str, dict[str, str]],
    discrn_items: int,
    rng: random.Random,
) -> None:
    """DisCRn examples over the tiny items of each pair whose two modalities were made, both orders."""
    for pair, (m1, m2) in PAIRS.items():
        if m1 not in modalities or m2 not in modalities:
            continue
        out = []
        for n in range(discrn_items):
            a, b = (m1, m2) if n % 2 == 0 else (m2, m1)
            ia, ib = rng.choice(sorted(captions[a])), rng.choice(sorted(captions[b]))
            label = n // 2 % 2
            out.append(
                {
                    "id": f"{pair}-{n:05d}", "pair": pair, "modalities": [a, b], "sample_ids": [ia, ib],
                    "entity_ids": [ia, ib], "captions": [captions[a][ia], captions[b][ib]],
                    "properties": {"attribute": rng.choice(["size", "colour"]), "values": ["x", "y"]},
                    "question": "which is bigger ?", "label": label, "answer": ["first", "second"][label],
                    "media": [],
                }
            )  # fmt: skip
        path = discrn_dir / pair / f"{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
