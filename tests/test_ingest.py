"""Ingest of the four real-data layouts (COCO, AudioCaps, Cap3D, MSR-VTT) into manifests + shards."""

from __future__ import annotations

import csv
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from xib.cli import main
from xib.data import media
from xib.data.manifest import read_manifest, sha256
from xib.data.shards import iter_items

WORLD = Path("data/world")


def manifests(root: Path, modality: str) -> dict[str, object]:
    out = {}
    for path in sorted((root / WORLD / modality).glob("*/manifest.parquet")):
        out[path.parent.name] = read_manifest(path, strict=True)
    return out


def check_common(root: Path, modality: str, source: str, expected_rows: int) -> None:
    """Every row: right modality/source/split folder, checksum of the stored bytes, disjoint entities."""
    frames = manifests(root, modality)
    assert sum(len(df) for df in frames.values()) == expected_rows
    owner: dict[str, str] = {}
    for split, df in frames.items():
        assert set(df["split"]) == {split}
        assert set(df["modality"]) == {modality} and set(df["source"]) == {source}
        assert df["id"].is_unique
        for entity in df["entity_id"]:
            assert owner.setdefault(entity, split) == split  # no entity in two splits
        base = root / WORLD / modality / split
        for row, data in iter_items(df, base):
            assert sha256(data) == row["checksum"]
            media.decode(modality, data)


def run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("XIB_ROOT", str(root))
    return main(list(args))


# ----------------------------------------------------------------------------------------------- COCO
def write_coco(folder: Path) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for i in range(6):
        name = f"{i:012d}.jpg"
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        img = Image.fromarray(pixels).convert("L") if i == 0 else Image.fromarray(pixels)  # one grey image
        img.save(folder / "images" / name, format="JPEG")
        images.append({"id": 100 + i, "file_name": name, "width": 48, "height": 40})
        for k in range(2):
            annotations.append(
                {"id": 1000 + 2 * i + k, "image_id": 100 + i, "caption": f"  picture {i}\nversion {k} "}
            )
    path = folder / "captions_train2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_ingest_coco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ann = write_coco(tmp_path / "coco")
    args = [
        "ingest",
        "data.ingest.format=coco",
        f"data.ingest.path={ann}",
        f"data.ingest.media_dir={ann.parent}/images",
    ]
    assert run(tmp_path, monkeypatch, *args) == 0
    assert "12 image items" in capsys.readouterr().out
    check_common(tmp_path, "image", "coco", 12)
    rows = {r["id"]: r for df in manifests(tmp_path, "image").values() for _, r in df.iterrows()}
    first = rows["coco-1000"]
    assert first["caption"] == "picture 0 version 0"  # whitespace normalised
    assert (
        first["entity_id"] == "coco:100" and rows["coco-1001"]["uri"] == first["uri"]
    )  # one image, two captions
    assert first["uri"].endswith(".png")  # the grey JPEG was converted to RGB PNG
    assert rows["coco-1002"]["uri"].endswith(".jpg")  # RGB JPEGs keep their original bytes
    assert (first["width"], first["height"]) == (48, 40)
    report = json.loads((tmp_path / "data/reports/ingest_image.json").read_text())
    assert report["items"] == 12 and report["entities"] == 6

    # a fixed split puts every item in train and removes the previous val/test folders
    assert run(tmp_path, monkeypatch, *args, "data.ingest.split=train") == 0
    assert list(manifests(tmp_path, "image")) == ["train"]


def test_ingest_coco_bad_annotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ann = write_coco(tmp_path / "coco")
    doc = json.loads(ann.read_text())
    doc["annotations"][3]["image_id"] = 999
    ann.write_text(json.dumps(doc))
    args = [
        "ingest",
        "data.ingest.format=coco",
        f"data.ingest.path={ann}",
        f"data.ingest.media_dir={ann.parent}/images",
    ]
    assert run(tmp_path, monkeypatch, *args) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"xib ingest: {ann}, row 4: annotation's image_id is listed in 'images' (999)"  # 1-based
    assert not (tmp_path / WORLD).exists()

    doc["annotations"][3]["image_id"], doc["annotations"][5]["caption"] = 101, " "
    ann.write_text(json.dumps(doc))
    assert run(tmp_path, monkeypatch, *args) == 1
    assert "row 6: caption is not empty after trimming" in capsys.readouterr().err


def test_ingest_corrupt_media_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ann = write_coco(tmp_path / "coco")
    (ann.parent / "images" / "000000000004.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    args = [
        "ingest",
        "data.ingest.format=coco",
        f"data.ingest.path={ann}",
        f"data.ingest.media_dir={ann.parent}/images",
    ]
    assert run(tmp_path, monkeypatch, *args) == 1
    err = capsys.readouterr().err
    assert "000000000004.jpg: image header is readable" in err and "captions_train2017.json row 9" in err
    assert not any((tmp_path / "data").rglob("*.parquet")) and not any((tmp_path / "data").rglob("*.tar"))


# ------------------------------------------------------------------------------------------ AudioCaps
def stereo_wav(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    left = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.stack([left, left], axis=1).tobytes())
    return buf.getvalue()


def test_ingest_audiocaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    folder = tmp_path / "audiocaps"
    (folder / "wav").mkdir(parents=True)
    rows = [("91139", "r1nicOVtvkQ", "130", "a woman talks nearby, as water pours")]
    rows += [("5" + str(i), f"yt{i:09d}", "30", f"sound number {i}") for i in range(4)]
    rows += [
        ("58", "yt000000000", "30", "the same clip, another caption"),
        ("99", "gone0000000", "0", "missing clip"),
    ]
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        writer.writerows(rows)
    (folder / "wav" / "r1nicOVtvkQ_130.wav").write_bytes(stereo_wav(1.0, 44100))
    for i in range(4):
        (folder / "wav" / f"yt{i:09d}_30.wav").write_bytes(media.encode_audio(np.zeros(16000, np.float32)))
    args = ["ingest", "data.ingest.format=audiocaps", f"data.ingest.path={folder / 'train.csv'}"]
    args.append(f"data.ingest.media_dir={folder / 'wav'}")
    assert run(tmp_path, monkeypatch, *args) == 0
    assert "1 rows without media skipped" in capsys.readouterr().out
    check_common(tmp_path, "audio", "audiocaps", 6)
    rows_by_id = {r["id"]: r for df in manifests(tmp_path, "audio").values() for _, r in df.iterrows()}
    assert (
        rows_by_id["audiocaps-58"]["entity_id"]
        == rows_by_id["audiocaps-50"]["entity_id"]
        == "audiocaps:yt000000000_30"  # a clip: YouTube id + start
    )
    resampled = rows_by_id["audiocaps-91139"]
    assert resampled["sample_rate"] == 16000 and resampled["duration_s"] == pytest.approx(1.0)

    assert run(tmp_path, monkeypatch, *args, "data.ingest.on_missing=error") == 1
    assert "train.csv, row 8: media file exists" in capsys.readouterr().err  # the 8th line


# ---------------------------------------------------------------------------------------------- Cap3D
def test_ingest_cap3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cap3d"
    folder.mkdir()
    rng = np.random.default_rng(0)
    uids = [f"{i:032x}" for i in range(5)]
    with open(folder / "Cap3D_automated_Objaverse.csv", "w", newline="") as handle:
        writer = csv.writer(handle)  # no header, as Cap3D ships it; captions contain commas
        for i, uid in enumerate(uids):
            writer.writerow([uid, f"a 3D model of a chair, style {i}"])
    for i, uid in enumerate(uids):
        cloud = rng.standard_normal((16384, 6)).astype(np.float32)  # xyz + rgb
        if i % 2:
            np.savez(folder / f"{uid}.npz", cloud)
        else:
            np.save(folder / f"{uid}.npy", cloud[:4000, :3])  # fewer points: sampled with replacement
    args = [
        "ingest",
        "data.ingest.format=cap3d",
        f"data.ingest.path={folder / 'Cap3D_automated_Objaverse.csv'}",
    ]
    assert run(tmp_path, monkeypatch, *args) == 0
    check_common(tmp_path, "pc", "cap3d", 5)
    for split, df in manifests(tmp_path, "pc").items():
        assert set(df["points"]) == {8192}
        assert df["caption"].str.contains("chair, style").all()
        for _, data in iter_items(df, tmp_path / WORLD / "pc" / split):
            assert media.decode_pc(data).shape == (8192, 3)


# --------------------------------------------------------------------------------------------- MSR-VTT
def write_msrvtt(folder: Path) -> Path:
    (folder / "videos").mkdir(parents=True)
    videos, sentences = [], []
    splits = ["train", "train", "validate", "test"]
    for i, split in enumerate(splits):
        clip = np.zeros((12, 48, 48, 3), np.uint8)
        clip[:, 10:30, 10:30] = (40 * i, 200, 90)
        (folder / "videos" / f"video{i}.mp4").write_bytes(media.encode_video(clip, fps=10))
        videos.append(
            {
                "category": 3,
                "url": "https://example.invalid",
                "video_id": f"video{i}",
                "split": split,
                "id": i,
            }
        )
        for k in range(2):
            sentences.append(
                {"caption": f"clip {i} caption {k}", "video_id": f"video{i}", "sen_id": 2 * i + k}
            )
    path = folder / "train_val_videodatainfo.json"
    path.write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    return path


def test_ingest_msrvtt_then_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = write_msrvtt(tmp_path / "msrvtt")
    args = [
        "ingest",
        "data.ingest.format=msrvtt",
        f"data.ingest.path={ann}",
        f"data.ingest.media_dir={ann.parent}/videos",
    ]
    assert run(tmp_path, monkeypatch, *args, "data.ingest.split=source") == 0
    check_common(tmp_path, "video", "msrvtt", 8)
    frames = manifests(tmp_path, "video")
    assert {k: len(v) for k, v in frames.items()} == {"train": 4, "val": 2, "test": 2}  # validate -> val
    row = frames["train"].iloc[0]
    assert (row["frames"], row["width"], row["height"]) == (12, 48, 48)
    assert row["duration_s"] == pytest.approx(1.2)
    assert run(tmp_path, monkeypatch, "validate") == 0

    # re-encoded to the world's clip shape
    more = ["data.ingest.split=source", "data.ingest.video_frames=5", "data.ingest.video_size=32"]
    assert run(tmp_path, monkeypatch, *args, *more) == 0
    check_common(tmp_path, "video", "msrvtt", 8)
    for split, df in manifests(tmp_path, "video").items():
        assert set(df["frames"]) == {5} and set(df["width"]) == {32}
        for _, data in iter_items(df, tmp_path / WORLD / "video" / split):
            assert media.decode_video(data).shape == (5, 32, 32, 3)
    assert run(tmp_path, monkeypatch, "validate") == 0


def test_ingest_rejects_bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert run(tmp_path, monkeypatch, "ingest", "data.ingest.format=laion") == 1
    assert "format is one of" in capsys.readouterr().err
    assert (
        run(
            tmp_path, monkeypatch, "ingest", "data.ingest.format=coco", f"data.ingest.path={tmp_path}/no.json"
        )
        == 1
    )
    assert "annotation file exists" in capsys.readouterr().err
