"""The feature cache: frozen encoders run once per item; training reads their outputs from disk.

Layout of `artifacts/features/<m>/<split>/`: `shard-000000.safetensors` ... holding, per item,
`<item_id>/features` [V, N, D] and `<item_id>/mask` [V, N] (bool), and `index.json` with the key
(encoder fingerprint + manifest hash), shapes, and which shard holds which item. An unchanged key
means the cache is reused; a changed one rebuilds it. The folder is written under a temporary name
and renamed at the end, so a crash never leaves a half cache that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import DataError, XibError
from xib.hashing import sha256_file
from xib.io import atomic_path
from xib.train.config import FEATURE_DTYPES as DTYPES

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT_VERSION = 1


def cache_dir(cfg: XibConfig, modality: str, split: str) -> Path:
    return Path(cfg.paths.artifacts) / "features" / modality / split


def cache_key(encoder_fingerprint: str, manifest_sha256: str, feature_dtype: str) -> str:
    text = json.dumps(
        {
            "encoder": encoder_fingerprint,
            "manifest": manifest_sha256,
            "dtype": feature_dtype,
            "v": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureShardWriter:
    """Streams (item_id, features, mask) into fixed-size safetensors shards; memory holds one shard."""

    def __init__(self, out_dir: Path, shard_items: int, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"train.feature_dtype={dtype!r}: must be one of {sorted(DTYPES)}")
        self.out_dir, self.shard_items, self.dtype = Path(out_dir), max(int(shard_items), 1), dtype
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict[str, Any]] = []
        self.shape: list[int] | None = None
        self._buffer: dict[str, Any] = {}
        self._ids: list[str] = []
        self._seen: set[str] = set()

    def add(self, item_id: str, features: Any, mask: Any) -> None:
        import torch

        if item_id in self._seen:
            raise DataError(str(self.out_dir), "item ids must be unique", row=item_id)
        if features.dim() != 3 or tuple(mask.shape) != tuple(features.shape[:2]):
            raise ValueError(
                f"encoder output for {item_id}: expected features [V, N, D] and mask [V, N], "
                f"got {tuple(features.shape)} and {tuple(mask.shape)}"
            )
        if self.shape is None:
            self.shape = list(features.shape)
        self._seen.add(item_id)
        self._buffer[f"{item_id}/features"] = features.detach().to(getattr(torch, self.dtype)).contiguous()
        self._buffer[f"{item_id}/mask"] = mask.detach().to(torch.bool).contiguous()
        self._ids.append(item_id)
        if len(self._ids) >= self.shard_items:
            self.flush()

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self._ids:
            return
        name = f"shard-{len(self.shards):06d}.safetensors"
        save_file(self._buffer, str(self.out_dir / name))
        self.shards.append({"file": name, "ids": list(self._ids)})
        self._buffer, self._ids = {}, []

    def close(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Flush the last shard and write index.json; returns the index."""
        self.flush()
        index = {
            "format": FORMAT_VERSION,
            "items": sum(len(s["ids"]) for s in self.shards),
            "shape": self.shape,
            "dtype": self.dtype,
            "shards": self.shards,
            **meta,
        }
        (self.out_dir / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        return index


def write_features(
    out_dir: str | Path,
    items: Iterable[tuple[str, Any, Any]],
    meta: dict[str, Any],
    shard_items: int = 512,
    dtype: str = "float32",
) -> Path:
    """Write a complete cache folder atomically from (item_id, features [V,N,D], mask [V,N])."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        writer = FeatureShardWriter(tmp, shard_items, dtype)
        for item_id, features, mask in items:
            writer.add(item_id, features, mask)
        writer.close(meta)
    return out_dir


def read_index(path: str | Path) -> dict[str, Any] | None:
    index_path = Path(path) / INDEX
    if not index_path.is_file():
        return None
    try:
        return json.loads(index_path.read_text())
    except json.JSONDecodeError:
        return None


class FeatureStore:
    """Random access to a feature cache by item id; shards are memory-mapped and opened lazily."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index = read_index(self.path)
        if index is None:
            raise XibError(f"{self.path}: no feature cache here (run `xib features modality=...` first)")
        self.index = index
        self._where = {item_id: shard["file"] for shard in index["shards"] for item_id in shard["ids"]}
        self._open: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._where

    def ids(self) -> list[str]:
        return list(self._where)

    @property
    def feature_dim(self) -> int:
        return int(self.index["shape"][-1])

    def get(self, item_id: str) -> tuple[Any, Any]:
        """(features [V, N, D] float32, mask [V, N] bool) of one item."""
        import torch
        from safetensors import safe_open

        shard = self._where.get(item_id)
        if shard is None:
            raise DataError(str(self.path / INDEX), "item id is not in the feature cache", row=item_id)
        handle = self._open.get(shard)
        if handle is None:
            handle = self._open[shard] = safe_open(str(self.path / shard), framework="pt")
        return handle.get_tensor(f"{item_id}/features").to(torch.float32), handle.get_tensor(
            f"{item_id}/mask"
        )


def _batched(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_cache(cfg: XibConfig, modality: str, split: str, encoder: Any = None, force: bool = False) -> Path:
    """Run the frozen encoder over one split's manifest into `artifacts/features/<m>/<split>/`.

    Reuses the cache when its key (encoder fingerprint, manifest hash, storage dtype) is unchanged.
    """
    import torch
    from tqdm import tqdm

    from xib.data.manifest import manifest_path, read_manifest
    from xib.data.media import decode
    from xib.data.shards import iter_items
    from xib.transient import apply_budgets

    apply_budgets(cfg.infra.retry)  # media may come from S3
    manifest = Path(manifest_path(cfg, modality, split))
    if not manifest.is_file():
        raise XibError(
            f"{manifest}: no manifest for {modality}/{split} (run `xib world` or `xib ingest` first)"
        )
    out = cache_dir(cfg, modality, split)
    if encoder is None:
        from xib.models.encoders import build_encoder

        encoder = build_encoder(modality, cfg.model.encoders[modality])
    fingerprint = encoder.fingerprint()
    manifest_sha = sha256_file(manifest)
    key = cache_key(fingerprint, manifest_sha, cfg.train.feature_dtype)
    index = read_index(out)
    if index is not None and index.get("key") == key and not force:
        log.info("features %s/%s: cache is current (key %s), reused", modality, split, key[:12])
        return out
    if index is not None:
        log.info(
            "features %s/%s: encoder or data changed (key %s -> %s), rebuilding",
            modality,
            split,
            str(index.get("key"))[:12],
            key[:12],
        )
    df = read_manifest(manifest)
    meta = {
        "key": key,
        "modality": modality,
        "split": split,
        "encoder_fingerprint": fingerprint,
        "manifest": str(manifest),
        "manifest_sha256": manifest_sha,
    }
    torch.manual_seed(cfg.seed)
    with atomic_path(out) as tmp:
        writer = FeatureShardWriter(tmp, cfg.train.feature_shard_items, cfg.train.feature_dtype)
        bar = tqdm(total=len(df), desc=f"features {modality}/{split}", unit="item", leave=False)
        items = iter_items(df, manifest.parent)
        for batch in _batched(items, max(cfg.train.feature_batch_size, 1)):
            arrays = []
            for row, data in batch:
                try:
                    arrays.append(decode(modality, data))
                except Exception as err:  # a broken media file: name it
                    raise DataError(
                        str(manifest), "media must decode", row=row["id"], detail=str(err)
                    ) from err
            with torch.inference_mode():
                output = encoder(encoder.preprocess(arrays))
            for (row, _), features, mask in zip(batch, output.features, output.mask):
                writer.add(str(row["id"]), features, mask)
            bar.update(len(batch))
        bar.close()
        writer.close(meta)
    log.info("features %s/%s: %d items written to %s", modality, split, len(df), out)
    return out


def build_all(cfg: XibConfig, modality: str, splits: Iterable[str] | None = None) -> dict[str, Path]:
    """Every split of one modality, with the encoder built once."""
    from xib.models.encoders import build_encoder

    encoder = build_encoder(modality, cfg.model.encoders[modality])
    return {
        split: build_cache(cfg, modality, split, encoder=encoder)
        for split in (splits or list(cfg.data.world.splits))
    }
