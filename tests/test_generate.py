"""`xib world`: entities, shards and manifests consistent, splits disjoint, byte-identical per seed."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import file_digests

from xib.config import load_config
from xib.data import media
from xib.data.generate import generate_world, plan_items
from xib.data.manifest import COLUMNS, manifest_path, read_manifest
from xib.data.shards import iter_items, read_media_bytes
from xib.data.world import ATTRIBUTES, KINDS, caption, load_entities, sample_entities, split_counts

MODALITIES = ("image", "pc", "audio", "video")
SMALL = [
    "data.world.items_per_modality=48",
    "data.world.entities_per_kind=5",
    "data.world.shard_items=10",
    "data.world.chunk_items=7",
    "data.world.points=512",
    "data.world.audio_seconds=0.5",
    "data.world.workers=1",
]


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    cfg = load_config([*SMALL, f"paths.root={root}"])
    summary = generate_world(cfg, progress=False, corpus=False)
    assert sum(summary["items"].values()) == 4 * 48
    return root


def test_layout_entities_and_disjoint_splits(world_root: Path):
    cfg = load_config([*SMALL, f"paths.root={world_root}"])
    entities = load_entities(cfg)
    assert list(entities.columns) == ["entity_id", "kind", "split", *ATTRIBUTES]
    assert len(entities) == 5 * len(KINDS) and entities["entity_id"].is_unique
    # every kind is in every split (evaluation needs each kind), entities in exactly one split
    assert entities.groupby("kind")["split"].nunique().eq(3).all()
    split_of = dict(zip(entities["entity_id"], entities["split"]))
    seen: dict[str, set[str]] = {}
    for modality in MODALITIES:
        for split in ("train", "val", "test"):
            df = read_manifest(manifest_path(cfg, modality, split), strict=True)
            assert list(df.columns) == list(COLUMNS)
            assert (df["split"] == split).all() and (df["modality"] == modality).all()
            assert all(split_of[e] == split for e in df["entity_id"])
            seen.setdefault(split, set()).update(df["entity_id"])
    assert (
        not (seen["train"] & seen["val"])
        and not (seen["train"] & seen["test"])
        and not (seen["val"] & seen["test"])
    )


def test_every_uri_resolves_and_checksums_match(world_root: Path):
    cfg = load_config([*SMALL, f"paths.root={world_root}"])
    w = cfg.data.world
    ids = set()
    for modality in MODALITIES:
        total = 0
        for split in ("train", "val", "test"):
            path = manifest_path(cfg, modality, split)
            df = read_manifest(path, strict=True)
            total += len(df)
            ids.update(df["id"])
            assert len(list(path.parent.glob("shard-*.tar"))) == -(-len(df) // w.shard_items)
            for row, data in iter_items(df, path.parent):
                assert hashlib.sha256(data).hexdigest() == row["checksum"]
                assert read_media_bytes(row["uri"], path.parent) == data
                assert row["caption"] == caption(next(k for k in KINDS if k.name == row["kind"]), modality)
                array = media.decode(modality, data)
                if modality == "image":
                    assert array.shape == (row["height"], row["width"], 3) == (w.image_size, w.image_size, 3)
                elif modality == "pc":
                    assert array.shape == (row["points"], 3) == (w.points, 3)
                elif modality == "audio":
                    wave, rate = media.decode_audio(data)
                    assert rate == row["sample_rate"] == w.sample_rate
                    assert wave.shape[0] == round(w.sample_rate * w.audio_seconds)
                    assert row["duration_s"] == pytest.approx(w.audio_seconds)
                else:
                    assert array.shape == (row["frames"], row["height"], row["width"], 3)
                    assert row["frames"] == w.video_frames and row["width"] == w.video_size
                    assert row["duration_s"] == pytest.approx(w.video_frames / w.video_fps)
            # fixed tar metadata: identical media give identical shards
            for shard in path.parent.glob("shard-*.tar"):
                with tarfile.open(shard) as tar:
                    assert {(m.mtime, m.uid, m.gid, m.uname) for m in tar.getmembers()} == {(0, 0, 0, "")}
        assert total == w.items_per_modality
    assert len(ids) == 4 * w.items_per_modality


def test_same_seed_same_bytes_any_workers_other_seed_differs(world_root: Path, tmp_path: Path):
    base = file_digests(world_root / "data" / "world")
    again = tmp_path / "again"
    generate_world(
        load_config([*SMALL, f"paths.root={again}", "data.world.workers=2"]), progress=False, corpus=False
    )
    assert file_digests(again / "data" / "world") == base
    other = tmp_path / "other"
    generate_world(
        load_config([*SMALL, f"paths.root={other}", "data.world.seed=1"]), progress=False, corpus=False
    )
    changed = file_digests(other / "data" / "world")
    for name in ("entities.parquet", "image/train/manifest.parquet", "audio/test/manifest.parquet"):
        assert changed[name] != base[name]


def test_regeneration_replaces_the_world_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = load_config([*SMALL, f"paths.root={tmp_path}", "data.world.items_per_modality=16"])
    generate_world(cfg, progress=False, corpus=False)
    before = file_digests(tmp_path / "data" / "world")

    import xib.data.generate as generate

    def broken(item, world, seed):
        if item.modality == "audio":
            raise RuntimeError("renderer crashed")
        return original(item, world, seed)

    original = generate.render_item
    monkeypatch.setattr(generate, "render_item", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        generate_world(
            load_config([*SMALL, f"paths.root={tmp_path}", "data.world.seed=5"]), progress=False, corpus=False
        )
    assert file_digests(tmp_path / "data" / "world") == before  # the old world is untouched
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["world"]  # no temp folder left


def test_items_spread_over_entities_and_split_counts():
    entities = sample_entities(0, 5, {"train": 0.8, "val": 0.1, "test": 0.1})
    items = plan_items(entities, "audio", 3 * len(entities) + 4, seed=0)
    counts = pd.Series([it.entity_id for it in items]).value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == len(entities)
    assert [it.item_id for it in items] == [f"audio-{i:06d}" for i in range(len(items))]
    assert split_counts(40, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 32, "val": 4, "test": 4}
    assert split_counts(3, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 1, "val": 1, "test": 1}
    per_kind = pd.DataFrame([(e.kind, e.split) for e in entities]).value_counts().unstack()
    assert (per_kind["train"] == 3).all() and (per_kind["val"] == 1).all() and (per_kind["test"] == 1).all()


def test_world_command_writes_the_corpus_in_the_same_world(
    xib_root: Path, capsys: pytest.CaptureFixture[str]
):
    from xib.cli import main

    few_lines = [f"data.corpus.{k}_lines=20" for k in ("fact", "caption", "instruction", "comparison")]
    assert main(["world", *SMALL, "data.world.items_per_modality=8", *few_lines]) == 0
    out = capsys.readouterr().out
    assert "items/s" in out and "32 items" in out
    world = xib_root / "data" / "world"
    assert (world / "entities.parquet").is_file()
    assert len((world / "corpus.txt").read_text().splitlines()) >= 20
