"""The one reader of instruction files (`data/instruct/<m>/<split>.jsonl`), for training and
evaluation alike: one rule set, so a file the trainer accepts is a file the evaluator accepts.

Rules, each failure a DataError naming the file and line:
- every non-blank line is one JSON object;
- `item_id`, `instruction`, `answer` are non-empty strings; `task`, when present, too (default `caption`);
- a `classify` record has a `candidates` list holding its `answer`;
- the file has at least one record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import DataError

if TYPE_CHECKING:
    from xib.config import XibConfig

REQUIRED = ("item_id", "instruction", "answer")


def instruct_path(cfg: XibConfig, modality: str, split: str) -> Path:
    return Path(cfg.paths.data) / "instruct" / modality / f"{split}.jsonl"


def read_instructions(path: str | Path) -> list[dict[str, Any]]:
    """Every record of an instruction file, in file order, each with its line number as `_line`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "instruction file is missing (run `xib instruct`)")
    records: list[dict[str, Any]] = []
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    str(path), "each line must be one JSON object", row=line_no, detail=str(err)
                ) from None
            if not isinstance(record, dict):
                raise DataError(str(path), "each line must be one JSON object", row=line_no)
            record.setdefault("task", "caption")
            missing = [k for k in (*REQUIRED, "task") if not isinstance(record.get(k), str) or not record[k]]
            if missing:
                raise DataError(str(path), f"record lacks {', '.join(missing)}", row=line_no)
            if record["task"] == "classify":
                candidates = record.get("candidates")
                if not isinstance(candidates, list) or record["answer"] not in candidates:
                    raise DataError(
                        str(path), "classify record's answer must be one of its candidates", row=line_no
                    )
            record.setdefault("caption", "")
            record["_line"] = line_no
            records.append(record)
    if not records:
        raise DataError(str(path), "instruction file is empty")
    return records
