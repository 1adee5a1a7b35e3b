"""A small, valid corpus written through the real format layer (media.py, shards.py, manifest.py).

Used by tests and benchmarks/validate_throughput.py: per modality, `train` and `val` manifests with
media in tar shards at the configured default sizes; entities are shared across modalities by split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xib.data import media
from xib.data.manifest import sha256, write_manifest
from xib.data.shards import ShardWriter

CAPTIONS = {
    "image": "a red square on a grey background",
    "audio": "a steady low hum",
    "pc": "a small round object",
    "video": "a red block moving to the right",
}


def sample_media(modality: str, rng: np.random.Generator, world: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """One array at the world's sizes and the manifest metadata that describes it."""
    if modality == "image":
        side = int(world.image_size)
        return rng.integers(0, 256, (side, side, 3), dtype=np.uint8), {"width": side, "height": side}
    if modality == "audio":
        rate, seconds = int(world.sample_rate), float(world.audio_seconds)
        t = np.arange(int(rate * seconds), dtype=np.float32) / rate
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t).astype(np.float32)
        return wave, {"sample_rate": rate, "duration_s": len(t) / rate}
    if modality == "pc":
        return rng.standard_normal((int(world.points), 3)).astype(np.float32), {"points": int(world.points)}
    frames, side, fps = int(world.video_frames), int(world.video_size), int(world.video_fps)
    video = rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    return video, {"width": side, "height": side, "frames": frames, "duration_s": frames / fps}


def write_sample_corpus(
    data_dir: str | Path,
    world: Any,
    items: dict[str, int] | None = None,
    seed: int = 0,
    shard_items: int = 1000,
) -> dict[str, int]:
    """Write `<data_dir>/world/<m>/{train,val}/` for each modality; returns items per modality.

    `items` gives the count per modality (default 8); one item in four goes to `val`.
    """
    items = items or {m: 8 for m in media.MODALITIES}
    rng = np.random.default_rng(seed)
    for modality, count in items.items():
        rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        for i in range(count):
            split = "val" if i % 4 == 3 else "train"
            array, meta = sample_media(modality, rng, world)
            rows[split].append(
                {
                    "id": f"{modality}-{i:06d}",
                    "entity_id": f"entity-{i:06d}",
                    "kind": "thing",
                    "modality": modality,
                    "caption": CAPTIONS[modality],
                    "split": split,
                    "source": "sample",
                    "_data": media.encode(
                        modality, array, sample_rate=meta.get("sample_rate"), fps=world.video_fps
                    ),
                    **meta,
                }
            )
        for split, split_rows in rows.items():
            directory = Path(data_dir) / "world" / modality / split
            with ShardWriter(directory, max_items=shard_items) as writer:
                for row in split_rows:
                    data = row.pop("_data")
                    row["uri"] = writer.write(f"{row['id']}.{media.EXTENSIONS[modality]}", data)
                    row["checksum"] = sha256(data)
            write_manifest(pd.DataFrame(split_rows), directory / "manifest.parquet")
    return items
