"""The feature cache: real encoder over real shards once, keyed by the encoder fingerprint;
reused when unchanged, rebuilt when changed, atomic, and read back by item id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xib.errors import DataError, XibError

ENCODER = [
    "model.encoders.image.path=",
    "model.encoders.image.arch.hidden_size=32",
    "model.encoders.image.arch.intermediate_size=64",
    "model.encoders.image.arch.num_hidden_layers=1",
]


def _media(root: Path, n: int = 7, split: str = "train", size: int = 32) -> Path:
    """n PNG images in tar shards + the manifest, through the data room's writers."""
    from xib.data.manifest import sha256, write_manifest
    from xib.data.media import encode
    from xib.data.shards import ShardWriter

    folder = root / "data" / "world" / "image" / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    with ShardWriter(folder, max_items=3) as writer:
        for i in range(n):
            data = encode("image", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            item_id = f"image-{split}-{i:03d}"
            uri = writer.write(f"{item_id}.png", data)
            rows.append(
                {
                    "id": item_id,
                    "entity_id": f"e{i}",
                    "kind": "cube",
                    "modality": "image",
                    "uri": uri,
                    "caption": "a cube",
                    "split": split,
                    "source": "world",
                    "checksum": sha256(data),
                    "width": size,
                    "height": size,
                }
            )
    return write_manifest(pd.DataFrame(rows), folder / "manifest.parquet")


def _cfg(extra: list[str] | None = None, layers: int = 1):
    from xib.config import load_config

    encoder = [o.replace("num_hidden_layers=1", f"num_hidden_layers={layers}") for o in ENCODER]
    return load_config(
        encoder + ["train.feature_shard_items=3", "train.feature_batch_size=2", *(extra or [])]
    )


def test_build_reuse_rebuild_and_read(xib_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    from xib.models.encoders import build_encoder
    from xib.train.features import FeatureStore, build_cache

    _media(xib_root)
    cfg = _cfg()
    out = build_cache(cfg, "image", "train")
    index = json.loads((out / "index.json").read_text())
    assert index["items"] == 7 and len(index["shards"]) == 3  # 3 + 3 + 1 items
    encoder = build_encoder("image", cfg.model.encoders["image"])
    assert index["encoder_fingerprint"] == encoder.fingerprint()

    store = FeatureStore(out)
    assert len(store) == 7
    features, mask = store.get("image-train-004")
    assert features.dim() == 3 and features.shape[-1] == 32 and mask.shape == features.shape[:2]
    # the cached features are the encoder's output for that very image
    from xib.data.media import decode
    from xib.data.shards import read_media_bytes

    data = read_media_bytes("shard-000001.tar#image-train-004.png", xib_root / "data/world/image/train")
    with torch.inference_mode():
        direct = encoder(encoder.preprocess([decode("image", data)]))
    torch.testing.assert_close(features, direct.features[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(DataError, match="not in the feature cache"):
        store.get("image-train-999")

    # unchanged fingerprint: reused (files untouched)
    stamp = (out / "shard-000000.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        build_cache(cfg, "image", "train")
    assert "reused" in caplog.text
    assert (out / "shard-000000.safetensors").stat().st_mtime_ns == stamp

    # another encoder (one more layer): rebuilt, with the new fingerprint
    cfg2 = _cfg(layers=2)
    build_cache(cfg2, "image", "train")
    index2 = json.loads((out / "index.json").read_text())
    assert index2["encoder_fingerprint"] != index["encoder_fingerprint"]
    assert not torch.equal(FeatureStore(out).get("image-train-004")[0], features)


def test_failed_build_leaves_previous_cache(xib_root: Path) -> None:
    from xib.train.features import build_cache

    manifest = _media(xib_root)
    out = build_cache(_cfg(), "image", "train")
    before = (out / "index.json").read_text()
    # corrupt one member of the last shard: decoding fails mid-way through the rebuild
    tar = manifest.parent / "shard-000002.tar"
    raw = bytearray(tar.read_bytes())
    start = raw.find(b"\x89PNG")
    raw[start : start + 64] = b"\x00" * 64
    tar.write_bytes(bytes(raw))
    manifest.touch()
    df = pd.read_parquet(manifest)
    df.loc[0, "caption"] = "changed"  # the manifest hash changes, so the cache must rebuild
    from xib.data.manifest import write_manifest

    write_manifest(df, manifest)
    with pytest.raises(DataError, match="image-train-006"):
        build_cache(_cfg(), "image", "train")
    assert (out / "index.json").read_text() == before  # the old cache is intact, no half cache
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_store_requires_an_index(tmp_path: Path) -> None:
    from xib.train.features import FeatureStore, write_features

    with pytest.raises(XibError, match="no feature cache"):
        FeatureStore(tmp_path / "none")
    items = [(f"x{i}", torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)) for i in range(5)]
    out = write_features(tmp_path / "c", items, {"key": "k"}, shard_items=2, dtype="float16")
    store = FeatureStore(out)
    assert len(json.loads((out / "index.json").read_text())["shards"]) == 3
    torch.testing.assert_close(store.get("x3")[0], items[3][1].half().float())
    with pytest.raises(DataError, match="unique"):
        write_features(tmp_path / "d", items + items[:1], {"key": "k"})
