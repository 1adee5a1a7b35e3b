"""The X-InstructBLIP DisCRn release (LAVIS `DisCRnDataset` files) converted into xib's DisCRn schema.

`xib discrn data.discrn.source=released data.discrn.released.<pair>=<file>`: each pair whose file is
set is converted (a user may have only objaverse.json); pairs left empty are skipped. Every file is
read and checked first (strict JSON, captions, questions, labels, sample ids, media paths under
`media_roots`, with `require_media` the media themselves through the shared rules), and only when all
pass are the outputs written: a refusal anywhere writes nothing. Layout and rules: docs/DATA.md.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.data.annotations import load_json
from xib.data.config import PAIRS
from xib.data.discrn_files import balance_counts, discrn_path
from xib.data.paths import read_regular, resolve_media
from xib.data.rules import check_media
from xib.data.text import clean_caption, quoted
from xib.errors import DataError, XibError
from xib.io import write_json
from xib.prompts import ANSWERS

if TYPE_CHECKING:
    from xib.config import XibConfig

# The release's questions name entities or modalities; LAVIS rewrites them at load time like this.
_QUESTION_REWRITES = (
    ("which entity", "which of the two options"),
    ("which object", "which of the two options"),
    ("which image", "which of the two options"),
    ("which audio", "which of the two options"),
    ("audio", "object"),
    ("image", "object"),
)
_FIRST = {"0", "first", "a", "entity a", "object a", "input a", "1st"}
_SECOND = {"1", "second", "b", "entity b", "object b", "input b", "2nd"}
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


def released_question(text: str) -> str:
    for old, new in _QUESTION_REWRITES:
        text = text.replace(old, new)
    return (text.strip() + "?").replace("??", "?")


def _start(value: Any, file: str, row: int) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DataError(file, "start_seconds are numbers", row=row, detail=quoted(value))
    try:
        seconds = float(value)
    except ValueError:
        raise DataError(file, "start_seconds are numbers", row=row, detail=quoted(value)) from None
    if not 0 <= seconds < 1e7:
        raise DataError(file, "start_seconds lie in 0..1e7", row=row, detail=quoted(value))
    return int(seconds)


def released_media(cfg: XibConfig, modality: str, sample_id: str, start: int) -> str:
    """Where each released input's medium lies: `released_patterns[modality]` under `media_roots`."""
    dcfg = cfg.data.discrn
    pattern = str(dcfg.released_patterns[modality])
    try:
        relative = pattern.format(id=sample_id, start=start, view=dcfg.image_view, points=dcfg.pc_points)
    except (KeyError, IndexError, ValueError) as err:
        raise DataError(
            f"data.discrn.released_patterns.{modality}",
            "pattern names only {id} {start} {view} {points}",
            detail=str(err),
        ) from None
    root = str(dcfg.media_roots.get(modality, "") or "")
    return str(Path(root) / relative) if root else relative


def _label(entry: dict, file: str, row: int) -> int:
    for key in ("label", "answer"):
        if key in entry and entry[key] is not None:
            value = entry[key]
            if isinstance(value, list) and value:
                value = value[0]
            text = str(value).strip().lower().rstrip(".")
            if text in _FIRST:
                return 0
            if text in _SECOND:
                return 1
            raise DataError(file, f"{key!r} is 0/1 or first/second", row=row, detail=quoted(entry[key]))
    raise DataError(file, "entry has a 'label' (0|1) or an 'answer' (first|second)", row=row)


def _present(cfg: XibConfig, modality: str, relative: str, file: str, row: int) -> bool:
    """With a media root: the file is a safe regular file under it (and passes the media rules)."""
    root = str(cfg.data.discrn.media_roots.get(modality, "") or "")
    if not root:
        return Path(relative).is_file()
    name = str(Path(relative).relative_to(root))
    path = resolve_media(Path(root), name, file, row)
    if path is None:
        return False
    limits = cfg.data.limits
    try:
        check_media(modality, read_regular(path, limits.max_media_bytes, row), limits, str(path))
    except DataError as err:
        raise DataError(
            err.file, err.rule, detail=f"{file} row {row}" + (f": {err.detail}" if err.detail else "")
        ) from None
    return True


def read_released(cfg: XibConfig, pair: str, path: str) -> list[dict[str, Any]]:
    """Convert one released DisCRn JSON file to xib records, balanced by swapping inputs."""
    dcfg = cfg.data.discrn
    file = str(path)
    if not Path(path).is_file():
        raise DataError(file, "released DisCRn file exists")
    data = load_json(Path(path), cfg.data.limits)
    if isinstance(data, dict):
        data = data.get("annotations", data.get("data"))
    if not isinstance(data, list):
        raise DataError(file, "released DisCRn file is a JSON list of examples")
    modalities = list(dcfg.released_modalities.get(pair, PAIRS[pair]))
    if sorted(modalities) != sorted(PAIRS[pair]):
        raise XibError(
            f"data.discrn.released_modalities.{pair}={modalities}: must be an order of {PAIRS[pair]}"
        )
    max_chars = cfg.data.validate.max_caption_chars
    invisible = cfg.data.limits.invisible_chars
    base: list[tuple[dict[str, Any], int]] = []
    missing_media = 0
    for row, entry in enumerate(data, start=1):
        question, captions, sample_ids = _checked_entry(entry, file, row, max_chars, invisible)
        label = _label(entry, file, row)
        starts = entry.get("start_seconds") or [None, None]
        if not isinstance(starts, list) or len(starts) != 2:
            raise DataError(file, "'start_seconds' is a list of two", row=row)
        media = [
            released_media(cfg, m, sample_ids[i], _start(starts[i], file, row))
            for i, m in enumerate(modalities)
        ]
        if dcfg.require_media and not all(
            _present(cfg, m, media[i], file, row) for i, m in enumerate(modalities)
        ):
            missing_media += 1
            continue
        props = entry.get("properties")
        record_id = entry.get("id", entry.get("instance_id", f"{pair}-{row:05d}"))
        record = {
            "id": str(record_id),
            "pair": pair,
            "modalities": list(modalities),
            "sample_ids": sample_ids,
            "entity_ids": list(sample_ids),
            "captions": captions,
            "properties": {
                "attribute": "",
                "values": list(props) if isinstance(props, list) and len(props) == 2 else [None, None],
            },
            "question": released_question(question),
            "label": label,
            "answer": ANSWERS[label],
            "media": media,
        }
        base.append((record, label))
    if not base:
        raise DataError(
            file, "released DisCRn file has usable examples", detail=f"{missing_media} lacked media"
        )
    # Swap half of each label group: labels and modality orders both 50/50 (within one per group).
    records = []
    for label in (0, 1):
        group = [r for r, y in base if y == label]
        for j, record in enumerate(group):
            records.append(_swap(record) if j % 2 else record)
    rng = random.Random(f"{dcfg.seed}|{pair}|released")
    rng.shuffle(records)
    return records


def _checked_entry(
    entry: Any, file: str, row: int, max_chars: int, invisible: str
) -> tuple[str, list[str], list[str]]:
    """One example's (question, captions, sample_ids), each checked and cleaned like ingested text."""
    if not isinstance(entry, dict):
        raise DataError(file, "each example is a JSON object", row=row)
    for key in ("sample_ids", "captions"):
        value = entry.get(key)
        if not isinstance(value, list) or len(value) != 2:
            raise DataError(file, f"{key!r} is a list of two", row=row)
    question = entry.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(file, "'question' is a non-empty string", row=row)
    question, _ = clean_caption(question, file, row, max_chars, invisible)
    captions = [clean_caption(c, file, row, max_chars, invisible)[0] for c in entry["captions"]]
    sample_ids = []
    for sid in entry["sample_ids"]:
        text = str(sid) if isinstance(sid, str | int) and not isinstance(sid, bool) else ""
        if not _SAFE_ID.fullmatch(text):
            raise DataError(file, "sample_ids are letters, digits, '_' or '-'", row=row, detail=quoted(sid))
        sample_ids.append(text)
    return question, captions, sample_ids


def _swap(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("modalities", "sample_ids", "entity_ids", "captions", "media"):
        out[key] = list(reversed(record[key]))
    out["properties"] = {**record["properties"], "values": list(reversed(record["properties"]["values"]))}
    out["label"] = 1 - record["label"]
    out["answer"] = ANSWERS[out["label"]]
    return out


def build_released(cfg: XibConfig) -> dict[str, dict[str, Any]]:
    """Convert every pair whose released file is set; write them all only when every one passed."""
    dcfg = cfg.data.discrn
    for pair in dcfg.pairs:
        if pair not in PAIRS:
            raise XibError(f"data.discrn.pairs: {pair!r} not among {sorted(PAIRS)}")
    files = {pair: str(dcfg.released.get(pair, "") or "") for pair in dcfg.pairs}
    files = {pair: path for pair, path in files.items() if path}
    if not files:
        raise XibError(
            "data.discrn.released: no released DisCRn file set "
            f"(data.discrn.released.<pair>=<file> for a pair of {sorted(PAIRS)})"
        )
    split = dcfg.split
    converted = {pair: read_released(cfg, pair, path) for pair, path in files.items()}
    for pair, records in converted.items():
        write_json(discrn_path(cfg, pair, split), records)
    return {pair: {split: balance_counts(records)} for pair, records in converted.items()}
