"""sha256, the one content hash: of bytes, of a file, and of what identifies a trained candidate.

Manifest checksums, feature-cache keys, checkpoint `weights_sha256`, the corpus hash and the
registry's provenance all use these, so the same file always has the same name everywhere.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

CHUNK = 1 << 20  # files are streamed in blocks this large, never read whole


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def update_with_file(digest: Any, path: str | os.PathLike[str]) -> None:
    """Stream a file's bytes into a running hashlib digest."""
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()


def checkpoint_hashes(checkpoint_dirs: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """sha256 of each modality's projection.safetensors: what identifies a candidate."""
    out = {}
    for modality, folder in sorted(checkpoint_dirs.items()):
        weights = Path(folder) / "projection.safetensors"
        if not weights.is_file():
            raise XibError(
                f"{weights}: no projection checkpoint for {modality} (run `xib align modality={modality}`)"
            )
        out[modality] = sha256_file(weights)
    return out


def data_hashes(cfg: XibConfig) -> dict[str, str]:
    """sha256 of the instruction and DisCRn files the candidate was trained and evaluated on."""
    data = Path(cfg.paths.data)
    out = {}
    for sub in ("instruct", "discrn"):
        for path in sorted((data / sub).rglob("*")):
            if path.is_file() and path.suffix in {".json", ".jsonl"}:
                out[str(path.relative_to(data))] = sha256_file(path)
    return out
