"""Where a project's trained projections are: `artifacts/align/<m>/`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig


def projection_dirs(artifacts_dir: Path) -> dict[str, Path]:
    """The projection checkpoint folders under a project's artifacts (`align/<m>/`)."""
    out = {}
    for folder in sorted((artifacts_dir / "align").glob("*")):
        if (folder / "projection.safetensors").is_file():
            out[folder.name] = folder
    return out


def checkpoint_dirs(cfg: XibConfig) -> dict[str, Path]:
    """`artifacts/align/<m>/` of every modality `cfg.eval.modalities` names; all must exist."""
    found = projection_dirs(Path(cfg.paths.artifacts))
    wanted = list(cfg.eval.modalities)
    missing = [m for m in wanted if m not in found]
    if missing:
        raise XibError(
            f"no trained projection for {missing} under {Path(cfg.paths.artifacts) / 'align'} "
            f"(run `xib align modality=...`, or narrow eval.modalities)"
        )
    return {m: found[m] for m in wanted}
