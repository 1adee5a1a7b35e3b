"""`xib world`: render the synthetic world into media shards, manifests and the entity table.

Layout (docs/ARCHITECTURE.md): `<data>/world/entities.parquet`, and per modality and split
`<data>/world/<m>/<split>/manifest.parquet` with `shard-000000.tar`, ... beside it.

Deterministic at any size: every item has its own seed (world seed, modality, item index), so the
bytes do not depend on the number of workers or on chunking; tar members have fixed metadata and
Parquet files are written with fixed options, so the same seed and parameters give byte-identical
files (and identical DVC hashes). The world is written into a temporary folder and renamed into
place only when complete.
"""

from __future__ import annotations

import copy
import hashlib
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from xib.data.world import Entity, caption, entities_frame, sample_entities
from xib.modalities import MODALITIES

if TYPE_CHECKING:
    from xib.config import XibConfig

SOURCE = "world"


@dataclass(frozen=True)
class PlannedItem:
    item_id: str
    index: int
    modality: str
    entity_id: str
    kind: str
    split: str


def world_dir(cfg: XibConfig) -> Path:
    return Path(cfg.paths.data) / "world"


def plan_items(entities: list[Entity], modality: str, count: int, seed: int) -> list[PlannedItem]:
    """`count` items of `modality`, spread evenly over the entities (each round a fresh shuffle)."""
    m = MODALITIES.index(modality)
    items: list[PlannedItem] = []
    n = len(entities)
    for start in range(0, count, n):
        order = np.random.default_rng([int(seed), 11, m, start // n]).permutation(n)
        for offset, j in enumerate(order[: count - start]):
            index, entity = start + offset, entities[j]
            items.append(
                PlannedItem(
                    f"{modality}-{index:06d}", index, modality, entity.entity_id, entity.kind, entity.split
                )
            )
    return items


def item_rng(seed: int, modality: str, index: int, salt: int = 0) -> np.random.Generator:
    # `salt` (data.world.train_seed, training items only) redraws renders without moving any split
    key = [int(seed), 13, MODALITIES.index(modality), int(index)]
    return np.random.default_rng(key + [int(salt)] if salt else key)


def media_meta(modality: str, world: Any) -> dict[str, Any]:
    """The manifest's metadata columns for a rendered item (every world item of a modality alike)."""
    if modality == "image":
        return {"width": int(world.image_size), "height": int(world.image_size)}
    if modality == "pc":
        return {"points": int(world.points)}
    if modality == "audio":
        samples = int(round(world.sample_rate * world.audio_seconds))
        return {"sample_rate": int(world.sample_rate), "duration_s": samples / world.sample_rate}
    return {
        "width": int(world.video_size),
        "height": int(world.video_size),
        "frames": int(world.video_frames),
        "duration_s": world.video_frames / world.video_fps,
    }


def render_item(item: PlannedItem, world: Any, seed: int) -> bytes:
    """Render and encode one item (the bytes that go into the shard)."""
    from xib.data import media
    from xib.data.render import render

    salt = int(world.train_seed) if item.split == "train" else 0
    array = render(item.kind, item.modality, item_rng(seed, item.modality, item.index, salt), world)
    return media.encode(item.modality, array, sample_rate=world.sample_rate, fps=world.video_fps)


def _render_chunk(task: tuple[dict[str, Any], int, list[PlannedItem]]) -> list[tuple[bytes, str]]:
    world_dict, seed, items = task
    world = SimpleNamespace(**world_dict)
    out = []
    for item in items:
        data = render_item(item, world, seed)
        out.append((data, hashlib.sha256(data).hexdigest()))  # the manifest's checksum
    return out


def _worker_init() -> None:
    # each worker is one core's worth of work: no nested thread pools
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _chunks(plan: dict[str, dict[str, list[PlannedItem]]], size: int) -> Iterator[list[PlannedItem]]:
    for modality in MODALITIES:
        for split_items in plan[modality].values():
            for start in range(0, len(split_items), size):
                yield split_items[start : start + size]


def _write_parquet(df: Any, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, compression="zstd")


def generate_world(cfg: XibConfig, progress: bool = True, corpus: bool = True) -> dict[str, Any]:
    """Write the whole world under `<data>/world` (atomically) and return a summary.

    `corpus=True` also writes the world's text corpus (`xib.data.corpus`) into the same folder.
    """
    from tqdm import tqdm

    from xib.config import to_dict
    from xib.io import atomic_path

    world = cfg.data.world
    seed = world.seed
    splits = list(world.splits)
    entities = sample_entities(seed, world.entities_per_kind, dict(world.splits))
    plan: dict[str, dict[str, list[PlannedItem]]] = {}
    for modality in MODALITIES:
        items = plan_items(entities, modality, world.items_per_modality, seed)
        plan[modality] = {split: [it for it in items if it.split == split] for split in splits}

    world_dict = to_dict(world)
    tasks = [(world_dict, seed, chunk) for chunk in _chunks(plan, max(1, world.chunk_items))]
    total = sum(len(chunk) for _, _, chunk in tasks)
    workers = max(1, world.workers)
    target = world_dir(cfg)
    started = time.perf_counter()
    summary: dict[str, Any] = {"items": {}, "bytes": {}, "seconds": {}}
    with (
        atomic_path(target) as tmp,
        tqdm(total=total, desc="world", unit="item", disable=not progress) as bar,
    ):
        tmp.mkdir(parents=True)
        _write_parquet(entities_frame(entities), tmp / "entities.parquet")
        pool = None
        if workers > 1:
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
            results: Iterator[list[tuple[bytes, str]]] = pool.imap(_render_chunk, tasks)
        else:
            results = map(_render_chunk, tasks)
        try:
            for modality in MODALITIES:
                t0 = time.perf_counter()
                for split in splits:
                    directory = tmp / modality / split
                    written = _write_split(directory, plan[modality][split], results, world, bar)
                    summary["items"][f"{modality}/{split}"] = written
                summary["seconds"][modality] = time.perf_counter() - t0
                summary["bytes"][modality] = sum(
                    f.stat().st_size for f in (tmp / modality).rglob("*") if f.is_file()
                )
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        if corpus:
            # the world's text corpus (data/world/corpus.txt) lands in the same atomic rename
            from xib.data.corpus import write_corpus

            staged = copy.deepcopy(cfg)
            staged.paths.data = str(tmp.parent)
            write_corpus(staged)
    summary["seconds"]["total"] = time.perf_counter() - started
    summary["bytes"]["total"] = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    summary["entities"] = len(entities)
    return summary


def _write_split(
    directory: Path,
    items: list[PlannedItem],
    results: Iterator[list[tuple[bytes, str]]],
    world: Any,
    bar: Any,
) -> int:
    """Consume this split's chunks (in plan order) into shards and its manifest."""
    import pandas as pd

    from xib.data.manifest import write_manifest
    from xib.data.media import EXTENSIONS
    from xib.data.shards import ShardWriter
    from xib.data.world import KINDS_BY_NAME

    rows = []
    size = max(1, int(world.chunk_items))
    directory.mkdir(parents=True, exist_ok=True)
    with ShardWriter(directory, max_items=int(world.shard_items)) as writer:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            rendered = next(results)
            for item, (data, checksum) in zip(chunk, rendered, strict=True):
                uri = writer.write(f"{item.item_id}.{EXTENSIONS[item.modality]}", data)
                rows.append(
                    {
                        "id": item.item_id,
                        "entity_id": item.entity_id,
                        "kind": item.kind,
                        "modality": item.modality,
                        "uri": uri,
                        "caption": caption(KINDS_BY_NAME[item.kind], item.modality),
                        "split": item.split,
                        "source": SOURCE,
                        "checksum": checksum,
                        **media_meta(item.modality, world),
                    }
                )
            bar.update(len(chunk))
    columns = ["id", "entity_id", "kind", "modality", "uri", "caption", "split", "source", "checksum"]
    write_manifest(pd.DataFrame(rows, columns=columns if not rows else None), directory / "manifest.parquet")
    return len(rows)
