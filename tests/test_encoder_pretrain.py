"""Brief encoder pre-training: it must raise held-out accuracy, and the stage must save real encoders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_encoders import TINY

from xib.errors import DataError
from xib.models.config import EncoderPretrainConfig
from xib.models.encoder_pretrain import label_ids, measure, pretrain_encoders, train_encoder
from xib.models.encoders import build_encoder


def pattern_images(count: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """Class = the texture (horizontal / vertical stripes, checks, diagonals); colours and phase random."""
    yy, xx = np.mgrid[0:16, 0:16]
    items, labels = [], []
    for i in range(count):
        pattern, phase = i % 4, int(rng.integers(0, 4))
        masks = (
            ((yy + phase) // 2) % 2,
            ((xx + phase) // 2) % 2,
            (yy // 2 + xx // 2 + phase) % 2,
            ((yy + xx + phase) // 3) % 2,
        )
        first, second = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        items.append(np.where(masks[pattern][..., None] == 1, first, second).astype(np.uint8))
        labels.append(f"p{pattern}")
    return items, labels


def test_pretraining_improves_held_out_accuracy() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train_items, train_labels = pattern_images(96, rng)
    test_items, test_labels = pattern_images(48, rng)  # unseen colours and phases
    classes = sorted(set(train_labels))
    pcfg = EncoderPretrainConfig(
        steps=120, batch_size=32, lr=3e-3, warmup_steps=5, probe_steps=100, probe_lr=0.05
    )
    encoder = build_encoder("image", TINY["image"])
    train_x, test_x = encoder.preprocess(train_items), encoder.preprocess(test_items)
    train_y, test_y = label_ids(train_labels, classes), label_ids(test_labels, classes)
    before = measure(encoder, (train_x, train_y), (test_x, test_y), len(classes), pcfg)
    weights = {k: v.clone() for k, v in encoder.state_dict().items()}
    losses = train_encoder(encoder, train_x, train_y, len(classes), pcfg, pcfg.steps)
    after = measure(encoder, (train_x, train_y), (test_x, test_y), len(classes), pcfg)
    # the encoder really changed, is frozen again, and tells the held-out classes apart far better
    assert any(not torch.equal(v, encoder.state_dict()[k]) for k, v in weights.items())
    assert encoder.frozen and not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    assert after["nearest_centroid"] >= before["nearest_centroid"] + 0.3, (before, after)
    assert after["linear_probe"] >= before["linear_probe"] + 0.15, (before, after)


# ------------------------------------------------------------------------------------- the stage, end to end
def write_tiny_world(data_dir: Path, per_split: dict[str, int], drop_kind_row: bool = False) -> None:
    """Two kinds per modality, real media files in tar shards, manifests of the contract's schema."""
    from xib.data.manifest import write_manifest
    from xib.data.media import encode
    from xib.data.shards import ShardWriter

    rng = np.random.default_rng(1)
    for modality in ("image", "audio", "pc", "video"):
        for split, count in per_split.items():
            folder = data_dir / "world" / modality / split
            rows = []
            with ShardWriter(folder) as writer:
                for i in range(count):
                    kind = ("dog", "car")[i % 2]
                    bright = 200 if kind == "dog" else 40
                    if modality == "image":
                        array = np.full((16, 16, 3), bright, np.uint8) + rng.integers(
                            0, 30, (16, 16, 3), dtype=np.uint8
                        )
                    elif modality == "video":
                        array = np.full((5, 16, 16, 3), bright, np.uint8)
                    elif modality == "audio":
                        t = np.arange(16000) / 16000
                        array = (0.3 * np.sin(2 * np.pi * (300 if kind == "dog" else 2000) * t)).astype(
                            np.float32
                        )
                    else:
                        array = (rng.standard_normal((600, 3)) * (0.3 if kind == "dog" else 1.0)).astype(
                            np.float32
                        )
                    ext = {"image": "png", "audio": "wav", "pc": "npy", "video": "mp4"}[modality]
                    item_id = f"{modality}-{split}-{i:04d}"
                    uri = writer.write(f"{item_id}.{ext}", encode(modality, array))
                    rows.append(
                        {
                            "id": item_id,
                            "entity_id": f"{kind}-{split}-{i}",
                            "kind": kind,
                            "modality": modality,
                            "uri": uri,
                            "split": split,
                            "caption": kind,
                            "source": "world",
                        }
                    )
            if drop_kind_row and modality == "image" and split == "train":
                rows[1]["kind"] = ""
            write_manifest(pd.DataFrame(rows), folder / "manifest.parquet")


def tiny_overrides(root: Path) -> list[str]:
    return [
        f"paths.root={root}",
        "model.encoder_pretrain.steps=3",
        "~model.encoder_pretrain.steps_by_modality",  # the demo's per-modality steps would dwarf these
        "model.encoder_pretrain.batch_size=4",
        "model.encoder_pretrain.warmup_steps=1",
        "model.encoder_pretrain.probe_steps=5",
        "model.encoder_pretrain.threads=1",
    ]


def test_pretrain_encoders_saves_loadable_encoders_and_report(xib_root: Path) -> None:
    from xib.config import load_config

    write_tiny_world(xib_root / "data", {"train": 8, "test": 4})
    cfg = load_config(tiny_overrides(xib_root))
    report = pretrain_encoders(cfg)
    out = xib_root / "artifacts" / "bootstrap" / "encoders"
    assert json.loads((out / "report.json").read_text()) == report
    assert set(report["modalities"]) == {"image", "audio", "pc", "video"}
    assert report["modalities"]["video"]["encoder"] == "image"
    for m, result in report["modalities"].items():
        assert result["test_items"] == 4
        for name in ("random", "pretrained"):
            assert (
                0.0 <= result[name]["linear_probe"] <= 1.0 and 0.0 <= result[name]["nearest_centroid"] <= 1.0
            ), m
    fingerprints = {}
    for m in ("image", "audio", "pc"):
        folder = out / m
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        meta = json.loads((folder / "xib_pretrain.json").read_text())
        # the image encoder also learns from every frame of the 8 training clips (frames_from)
        frames = 8 * int(cfg.data.world.video_frames) if m == "image" else 0
        assert meta["classes"] == ["car", "dog"] and meta["train_items"] == 8 + frames
        encoder = build_encoder(m, cfg.model.encoders[m])  # the demo config's own path, through real loading
        assert encoder.loaded_from == folder
        assert encoder.fingerprint() == meta["fingerprint"]
        assert (
            encoder.fingerprint()
            != build_encoder(
                m, dataclasses.replace(build_encoder(m, cfg.model.encoders[m]).cfg, path="")
            ).fingerprint()
        )
        fingerprints[m] = meta["fingerprint"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic: no temp dirs left behind

    # unchanged config and data: nothing retrained; a changed schedule retrains
    mtime = (out / "image" / "model.safetensors").stat().st_mtime_ns
    pretrain_encoders(cfg)
    assert (out / "image" / "model.safetensors").stat().st_mtime_ns == mtime
    cfg2 = load_config([*tiny_overrides(xib_root), "model.encoder_pretrain.steps=4"])
    pretrain_encoders(cfg2)
    assert json.loads((out / "image" / "xib_pretrain.json").read_text())["steps"] == 4
    # a modality's own step count retrains that encoder alone
    pc_mtime = (out / "pc" / "model.safetensors").stat().st_mtime_ns
    cfg3 = load_config(
        [
            *tiny_overrides(xib_root),
            "model.encoder_pretrain.steps=4",
            "+model.encoder_pretrain.steps_by_modality={image: 6}",
        ]
    )
    pretrain_encoders(cfg3)
    assert json.loads((out / "image" / "xib_pretrain.json").read_text())["steps"] == 6
    assert json.loads((out / "pc" / "xib_pretrain.json").read_text())["steps"] == 4
    assert (out / "pc" / "model.safetensors").stat().st_mtime_ns == pc_mtime


def test_missing_label_is_a_data_error(xib_root: Path) -> None:
    from xib.config import load_config

    write_tiny_world(xib_root / "data", {"train": 4, "test": 2}, drop_kind_row=True)
    cfg = load_config(tiny_overrides(xib_root))
    with pytest.raises(DataError, match=r"image/train/manifest.parquet, row 1: kind is not empty"):
        pretrain_encoders(cfg)
    assert not (xib_root / "artifacts" / "bootstrap" / "encoders" / "image").exists()
