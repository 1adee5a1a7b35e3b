"""Where DisCRn files live and how a written file is summarised: shared by the world's builder
(`xib.data.discrn`) and the release's converter (`xib.data.discrn_released`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xib.config import XibConfig


def discrn_path(cfg: XibConfig, pair: str, split: str) -> Path:
    return Path(cfg.paths.data) / "discrn" / pair / f"{split}.json"


def balance_counts(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "examples": len(records),
        "labels": dict(sorted(Counter(r["answer"] for r in records).items())),
        "first_modality": dict(sorted(Counter(r["modalities"][0] for r in records).items())),
        "attributes": dict(sorted(Counter(r["properties"]["attribute"] for r in records).items())),
    }
