"""Intake of real data sets: good fixtures in each released layout accepted with the expected counts,
splits and conversions; one generated defective or hostile file per rule (beside a good item) refused
with one line naming file, row and rule, exit status 1, and nothing written."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    AUDIOCAPS_HEADER,
    audiocaps_layout,
    cap3d_layout,
    clip,
    cloud,
    coco_layout,
    jpeg,
    npz,
    png_bad_crc,
    png_pixel_bomb,
    sound,
    write,
)

from xib.cli import main
from xib.data.manifest import read_manifest

WORLD = Path("data/world")


def run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("XIB_ROOT", str(root))
    return main(list(args))


def manifests(root: Path, modality: str) -> dict[str, object]:
    return {
        p.parent.name: read_manifest(p, strict=True)
        for p in sorted((root / WORLD / modality).glob("*/manifest.parquet"))
    }


def written(root: Path) -> list[str]:
    """Everything xib wrote under data/ (the inputs live elsewhere)."""
    data = root / "data"
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []


def refused(root: Path, monkeypatch, capsys, args: list[str], *expected: str) -> str:
    """The run fails with one line holding every `expected` text, no traceback, nothing written."""
    before = written(root)
    assert run(root, monkeypatch, *args) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and "\x1b" not in captured.err
    for text in expected:
        assert text in lines[0], lines[0]
    assert written(root) == before, "a refused ingest wrote something"
    return lines[0]


# ============================================================================ good released layouts
def test_cap3d_released_layout(tmp_path: Path, monkeypatch, capsys) -> None:
    ann, uids = cap3d_layout(tmp_path / "Cap3D")
    args = ["ingest", "data.ingest.format=cap3d", f"data.ingest.path={ann}", "data.ingest.cap3d_views=[2]"]
    assert run(tmp_path, monkeypatch, *args, "data.ingest.split=train") == 0
    out = capsys.readouterr().out
    assert "4 pc items (train 4), plus 2 image items" in out
    pc = manifests(tmp_path, "pc")["train"]
    assert len(pc) == 4 and set(pc["points"]) == {8192}
    by_id = {r["id"]: r for _, r in pc.iterrows()}
    big_endian = by_id[f"cap3d-{uids[1]}"]
    assert "xyz of 6 columns kept" in big_endian["conversion"] and ">f8 -> <f4" in big_endian["conversion"]
    assert "NPZ -> NPY" in big_endian["conversion"]
    source = json.loads(big_endian["source_meta"])
    assert source == {"format": "npz", "dtype": ">f8", "points": 8192, "columns": 6, "member": "arr_0.npy"}
    images = manifests(tmp_path, "image")["train"]
    assert sorted(images["id"]) == [f"cap3d-{uids[0]}-view2", f"cap3d-{uids[2]}-view2"]
    assert set(images["entity_id"]) == {f"cap3d:{uids[0]}", f"cap3d:{uids[2]}"}
    assert (images["conversion"] == "").all()  # progressive RGB JPEGs kept as they are
    report = json.loads((tmp_path / "data/reports/ingest_pc.json").read_text())
    assert report["views_absent"] == 2 and report["modalities"] == {"pc": {"train": 4}, "image": {"train": 2}}
    assert run(tmp_path, monkeypatch, "validate") == 0


def test_audiocaps_three_csvs_one_command(tmp_path: Path, monkeypatch, capsys) -> None:
    splits = audiocaps_layout(tmp_path / "AudioCaps")
    args = [
        "ingest",
        "data.ingest.format=audiocaps",
        f"data.ingest.path={tmp_path / 'AudioCaps/dataset'}",
        f"data.ingest.media_dir={tmp_path / 'AudioCaps/audio'}",
    ]
    assert run(tmp_path, monkeypatch, *args) == 0
    assert "audio items (train 2, val 1, test 5)" in capsys.readouterr().out
    frames = manifests(tmp_path, "audio")
    assert {k: len(v) for k, v in frames.items()} == {k: len(v) for k, v in splits.items()}
    rows = {r["id"]: r for df in frames.values() for _, r in df.iterrows()}
    dashed = rows["audiocaps-1"]
    assert dashed["entity_id"] == "audiocaps:-dash_start0_30" and dashed["split"] == "train"
    assert (
        dashed["conversion"] == "downmix 2 -> 1 channel; resample 44100 -> 16000 Hz; WAV PCM_24 -> WAV PCM_16"
    )
    assert json.loads(dashed["source_meta"]) == {
        "format": "wav",
        "subtype": "PCM_24",
        "sample_rate": 44100,
        "channels": 2,
        "frames": 44100,
        "duration_s": 1.0,
    }
    assert rows["audiocaps-2"]["conversion"] == ""  # WAVE_FORMAT_EXTENSIBLE 16-bit mono 16 kHz: kept as is
    assert rows["audiocaps-3"]["caption"] == "a car passes slowly"  # quoted newline, one record
    assert rows["audiocaps-3"]["conversion"] == ""  # extra RIFF chunks
    test = frames["test"]
    assert test["uri"].nunique() == 1 and len(test) == 5  # five captions, one clip
    assert "resample 22050 -> 16000 Hz" in test["conversion"].iloc[0]
    assert run(tmp_path, monkeypatch, "validate") == 0


def test_audiocaps_flac_pattern(tmp_path: Path, monkeypatch, capsys) -> None:
    audiocaps_layout(tmp_path / "AudioCaps", ext="flac")
    args = [
        "ingest",
        "data.ingest.format=audiocaps",
        f"data.ingest.path={tmp_path / 'AudioCaps/dataset'}",
        f"data.ingest.media_dir={tmp_path / 'AudioCaps/audio'}",
        "data.ingest.audiocaps_pattern='{youtube_id}_{start_time}.flac'",
    ]
    assert run(tmp_path, monkeypatch, *args) == 0
    rows = {r["id"]: r for df in manifests(tmp_path, "audio").values() for _, r in df.iterrows()}
    assert json.loads(rows["audiocaps-1"]["source_meta"])["format"] == "flac"
    assert "FLAC PCM_24 -> WAV PCM_16" in rows["audiocaps-1"]["conversion"]


def test_coco_image_variants(tmp_path: Path, monkeypatch) -> None:
    ann = coco_layout(tmp_path / "coco")
    args = [
        "ingest",
        "data.ingest.format=coco",
        f"data.ingest.path={ann}",
        f"data.ingest.media_dir={ann.parent / 'images'}",
    ]
    args.append("data.ingest.split=train")
    assert run(tmp_path, monkeypatch, *args) == 0
    df = manifests(tmp_path, "image")["train"]
    assert len(df) == 10 and df["entity_id"].nunique() == 5  # several captions per image
    conv = {json.loads(r["source_meta"])["mode"] + str(r["width"]): r["conversion"] for _, r in df.iterrows()}
    rotated = df[df["conversion"].str.contains("EXIF orientation 6")].iloc[0]
    assert (rotated["width"], rotated["height"]) == (32, 40)  # displayed upright: sides swapped
    assert conv["P24"] == "P -> RGB; stored as PNG"
    assert conv["RGBA24"] == "RGBA -> RGB (alpha over white); stored as PNG"
    assert conv["RGB40"] == ""  # the progressive JPEG keeps its bytes
    assert run(tmp_path, monkeypatch, "validate") == 0


# =============================================================================== one test per rule
def coco_with(tmp_path: Path, name: str, data: bytes | None, **ann_extra) -> list[str]:
    """A COCO set: one good image plus `name` (holding `data`, unless None: the file is made by the test)."""
    root = tmp_path / "coco"
    write(root / "images" / "good.jpg", jpeg())
    if data is not None:
        write(root / "images" / name, data)
    images = [{"id": 1, "file_name": "good.jpg"}, {"id": 2, "file_name": name}]
    anns = [{"id": 10, "image_id": 1, "caption": "good"}, {"id": 11, "image_id": 2, "caption": "bad"}]
    write(root / "captions.json", json.dumps({"images": images, "annotations": anns}))
    return [
        "ingest",
        "data.ingest.format=coco",
        f"data.ingest.path={root / 'captions.json'}",
        f"data.ingest.media_dir={root / 'images'}",
        "data.ingest.on_missing=error",
    ]


@pytest.mark.parametrize(
    "name, rule",
    [
        ("../outside.jpg", "media file name has no '..' component"),
        ("/etc/hostname", "media file name is relative to the media folder"),
        ("a\x00b.jpg", "media file name holds no NUL byte"),
        ("", "media file name is not empty"),
        ("\x1b[2Jx.jpg", "media file name holds no control or invisible characters ('\\x1b[2Jx.jpg')"),
    ],
)
def test_unsafe_media_names(tmp_path: Path, monkeypatch, capsys, name: str, rule: str) -> None:
    args = coco_with(tmp_path, "x.jpg", None)
    doc = json.loads(Path(args[2].split("=", 1)[1]).read_text())
    doc["images"][1]["file_name"] = name
    Path(args[2].split("=", 1)[1]).write_text(json.dumps(doc))
    refused(tmp_path, monkeypatch, capsys, args, "captions.json, row 2: ", rule)


def test_symlink_out_of_media_root(tmp_path: Path, monkeypatch, capsys) -> None:
    secret = write(tmp_path / "elsewhere" / "secret.jpg", jpeg())
    args = coco_with(tmp_path, "link.jpg", None)
    os.symlink(secret, tmp_path / "coco/images/link.jpg")
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        args,
        "row 2: media path resolves inside the media folder",
        "'link.jpg'",
    )


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_only_regular_files_are_opened(tmp_path: Path, monkeypatch, capsys, kind: str) -> None:
    import stat

    args = coco_with(tmp_path, "special.jpg", None)
    target = tmp_path / "coco/images/special.jpg"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        try:  # the device /dev/zero is (1, 5): reading it never ends
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 5))
        except OSError:
            pytest.skip("no permission to make a device node here")
    word = {"fifo": "FIFO", "folder": "folder", "device": "character device"}[kind]
    refused(tmp_path, monkeypatch, capsys, args, "special.jpg, row 2: media file is a regular file", word)


def test_missing_media_skipped_and_counted(tmp_path: Path, monkeypatch, capsys) -> None:
    args = coco_with(tmp_path, "absent.jpg", None)[:-1]
    assert run(tmp_path, monkeypatch, *args) == 0
    assert "1 rows without media skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "data/reports/ingest_image.json").read_text())
    assert report["missing_media_skipped"] == 1 and report["items"] == 1


@pytest.mark.parametrize(
    "data, rule",
    [
        (b"GIF89a" + b"\x00" * 64, "image file is PNG/JPEG by its content (magic bytes) (found gif"),
        (b"<html>not an image</html>", "(found text/markup"),
        (png_pixel_bomb(), "image has at most 40000000 pixels (100000x100000 in the header"),
        (png_bad_crc(), "image decodes completely"),
        (jpeg()[:300], "image decodes completely"),
    ],
    ids=["gif", "html", "pixel-bomb", "bad-crc", "truncated-jpeg"],
)
def test_image_rules(tmp_path: Path, monkeypatch, capsys, data: bytes, rule: str) -> None:
    args = coco_with(tmp_path, "bad.jpg", data)
    refused(tmp_path, monkeypatch, capsys, args, "images/bad.jpg: ", rule, "captions.json row 2")


def audiocaps_with(
    tmp_path: Path, data: bytes | None, rows: list[list[str]] | None = None, *extra: str
) -> list[str]:
    root = tmp_path / "ac"
    rows = rows or [["1", "goodclip001", "0", "fine"], ["2", "badclip0001", "0", "broken"]]
    buf = io.StringIO()
    csv.writer(buf).writerows([AUDIOCAPS_HEADER, *rows])
    write(root / "train.csv", buf.getvalue())
    write(root / "wav" / "goodclip001_0.wav", sound())
    if data is not None:
        write(root / "wav" / "badclip0001_0.wav", data)
    return [
        "ingest",
        "data.ingest.format=audiocaps",
        f"data.ingest.path={root / 'train.csv'}",
        f"data.ingest.media_dir={root / 'wav'}",
        *extra,
    ]


def _truncated_wav() -> bytes:
    return sound(1.0)[:-3000]


@pytest.mark.parametrize(
    "data, extra, rule",
    [
        (
            _truncated_wav(),
            (),
            "WAV data chunk is complete (declares 32000 bytes, holds 29000; train.csv row 3)",
        ),
        (sound(2.0), ("data.limits.max_audio_seconds=1",), "audio lasts at most 1 s"),
        (sound(1.0, 16000, 1, "ULAW"), (), "audio encoding is one of"),
        (sound(1.0, 16000, 1, "FLOAT")[:60] + np.full(100, np.nan, "<f4").tobytes(), (), "audio"),
        (b"ID3\x03" + b"\x00" * 100, (), "audio file is WAV/FLAC by its content (magic bytes) (found mp3"),
    ],
    ids=["truncated", "too-long", "mu-law", "nan-float", "mp3"],
)
def test_audio_rules(tmp_path: Path, monkeypatch, capsys, data: bytes, extra: tuple, rule: str) -> None:
    args = audiocaps_with(tmp_path, data, None, *extra)
    refused(tmp_path, monkeypatch, capsys, args, "badclip0001_0.wav: ", rule)


def test_audio_nan_is_refused_by_rule() -> None:
    import soundfile as sf

    from xib.data.config import LimitsConfig
    from xib.data.rules import check_media
    from xib.errors import DataError

    buf = io.BytesIO()
    sf.write(buf, np.array([0.1, np.nan, 0.2] * 2000, np.float32), 16000, subtype="FLOAT", format="WAV")
    with pytest.raises(DataError, match="audio samples are finite"):
        check_media("audio", buf.getvalue(), LimitsConfig())


def cap3d_with(tmp_path: Path, data: bytes, *extra: str) -> list[str]:
    root = tmp_path / "Cap3D"
    write(root / "objaverse_pc_parallel/good/good_8192.npz", npz(cloud()))
    write(root / "objaverse_pc_parallel/bad/bad_8192.npz", data)
    write(root / "captions.csv", "good,a chair\nbad,a table\n")
    return ["ingest", "data.ingest.format=cap3d", f"data.ingest.path={root / 'captions.csv'}", *extra]


def _pickled() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, arr_0=np.array([{"x": 1}], dtype=object))
    return buf.getvalue()


def _nan_cloud() -> bytes:
    points = cloud(100, 3)
    points[5, 1] = np.nan
    return npz(points)


@pytest.mark.parametrize(
    "data, extra, rule",
    [
        (_pickled(), (), "point cloud holds no pickled objects (object arrays)"),
        (
            npz(np.zeros((1_000_000, 3), np.float32), compressed=True),
            ("data.limits.max_array_bytes=300000",),
            "NPZ member is at most 304096 bytes uncompressed (arr_0.npy: 12000128",
        ),
        (npz(cloud(100, 3), key="points") + b"", (), None),
        (_nan_cloud(), (), "point coordinates are finite"),
        (npz(cloud(100, 2)), (), "point cloud has shape [N, 3+]"),
        (npz(np.full((10, 3), 1e300)), (), "point coordinates fit float32"),
        (npz(cloud())[:-200], (), "point cloud decodes completely"),
    ],
    ids=[
        "pickle",
        "member-size",
        "one-member-any-name",
        "nan",
        "two-columns",
        "float64-overflow",
        "truncated",
    ],
)
def test_point_cloud_rules(
    tmp_path: Path, monkeypatch, capsys, data: bytes, extra: tuple, rule: str | None
) -> None:
    args = cap3d_with(tmp_path, data, *extra)
    if rule is None:  # a single member under another key is still the one array
        assert run(tmp_path, monkeypatch, *args) == 0
        return
    refused(tmp_path, monkeypatch, capsys, args, "bad_8192.npz: ", rule, "captions.csv row 2")


def test_video_rules(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "msrvtt"
    write(root / "videos/good.mp4", clip())
    write(root / "videos/bad.mp4", clip(frames=12))
    videos = [{"video_id": "good", "split": "train"}, {"video_id": "bad", "split": "train"}]
    sents = [
        {"video_id": "good", "caption": "ok", "sen_id": 1},
        {"video_id": "bad", "caption": "long", "sen_id": 2},
    ]
    write(root / "ann.json", json.dumps({"videos": videos, "sentences": sents}))
    args = [
        "ingest",
        "data.ingest.format=msrvtt",
        f"data.ingest.path={root / 'ann.json'}",
        f"data.ingest.media_dir={root / 'videos'}",
    ]
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        [*args, "data.limits.max_video_frames=8"],
        "bad.mp4: ",
        "video has at most 8 frames",
    )
    write(root / "videos/bad.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    refused(tmp_path, monkeypatch, capsys, args, "bad.mp4: ", "video decodes completely")
    write(root / "videos/bad.mp4", clip(frames=3))  # decodes, but fewer frames than xib validate allows
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        args,
        "bad.mp4: ",
        "video has 5..64 frames (xib validate's rule) (3 frames in the stored medium; ann.json row 2)",
    )


# ----------------------------------------------------------------------------------- annotation files
@pytest.mark.parametrize(
    "text, rule",
    [
        (
            '{"images": [], "images": [], "annotations": []}',
            "JSON objects have no duplicate keys (key 'images')",
        ),
        ('{"images": ' + "[" * 40 + "]" * 40 + ', "annotations": []}', "JSON nests at most 32 levels"),
        (
            '{"images": [{"id": 99999999999999999999, "file_name": "a.jpg"}], "annotations": []}',
            "JSON integers lie within",
        ),
        ('{"images": [], "annotations": [NaN]}', "JSON holds no NaN or Infinity"),
        ('{"images": [],\n "annotations": [}', "captions.json, row 2: annotation file is valid JSON"),
        (
            '{"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}',
            "row 1: image id is letters, digits",
        ),
    ],
    ids=["duplicate-key", "depth", "big-int", "nan", "syntax", "id-type"],
)
def test_strict_json(tmp_path: Path, monkeypatch, capsys, text: str, rule: str) -> None:
    args = coco_with(tmp_path, "x.jpg", jpeg())
    Path(args[2].split("=", 1)[1]).write_text(text)
    refused(tmp_path, monkeypatch, capsys, args, rule)


@pytest.mark.parametrize(
    "rows, rule",
    [
        (
            [["1", "goodclip001", "0", "fine"], AUDIOCAPS_HEADER, ["2", "badclip0001", "0", "x"]],
            "train.csv, row 3: the header line appears once",
        ),
        (
            [["1", "goodclip001", "0", "fine"], ["2", "badclip0001", "1.5", "x"]],
            "train.csv, row 3: start_time is a whole number of seconds ('1.5')",
        ),
        (
            [["1", "goodclip001", "0", "fine"], ["2", "bad/../clip", "0", "x"]],
            "row 3: youtube_id is letters, digits, '_' or '-'",
        ),
        ([["1", "goodclip001", "0", "fine"], ["2", "badclip0001", "0"]], "row 3: row has 4 fields (got 3)"),
    ],
    ids=["repeated-header", "start-time", "unsafe-id", "fields"],
)
def test_csv_records(tmp_path: Path, monkeypatch, capsys, rows: list, rule: str) -> None:
    refused(tmp_path, monkeypatch, capsys, audiocaps_with(tmp_path, sound(), rows), rule)


def test_csv_not_utf8_and_nul(tmp_path: Path, monkeypatch, capsys) -> None:
    args = audiocaps_with(tmp_path, sound())
    csv_path = Path(args[2].split("=", 1)[1])
    csv_path.write_bytes(b"audiocap_id,youtube_id,start_time,caption\n1,goodclip001,0,caf\xe9\n")
    refused(tmp_path, monkeypatch, capsys, args, "train.csv, row 2: annotation file is valid UTF-8")
    csv_path.write_bytes(b"audiocap_id,youtube_id,start_time,caption\n1,goodclip001,0,a\x00b\n")
    refused(tmp_path, monkeypatch, capsys, args, "train.csv, row 2: CSV holds no NUL bytes")


def test_audiocaps_split_leak_names_both_files(tmp_path: Path, monkeypatch, capsys) -> None:
    audiocaps_layout(tmp_path / "AudioCaps")
    val = tmp_path / "AudioCaps/dataset/val.csv"
    val.write_text(val.read_text() + "99,plainid0001,0,the train clip again\n")
    args = [
        "ingest",
        "data.ingest.format=audiocaps",
        f"data.ingest.path={tmp_path / 'AudioCaps/dataset'}",
        f"data.ingest.media_dir={tmp_path / 'AudioCaps/audio'}",
    ]
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        args,
        "val.csv, row 4: a clip (youtube_id + start_time) is in one split only",
        "plainid0001_0 is val here and train at",
        "train.csv row 3",
    )


# -------------------------------------------------------------------------------------------- captions
@pytest.mark.parametrize(
    "caption, rule",
    [
        (
            "red \x1b[31malert\x1b[0m",
            "caption holds no control characters (C0, C1, ANSI escapes) (U+001B in 'red \\x1b[31malert",
        ),
        ("c1 \x9b control", "U+009B"),
        ("   \n\t ", "caption is not empty after trimming"),
        ("x" * 2001, "caption has at most 2000 characters"),
    ],
    ids=["ansi", "c1", "blank", "long"],
)
def test_caption_rules(tmp_path: Path, monkeypatch, capsys, caption: str, rule: str) -> None:
    args = coco_with(tmp_path, "x.jpg", jpeg())
    doc = json.loads(Path(args[2].split("=", 1)[1]).read_text())
    doc["annotations"][1]["caption"] = caption
    Path(args[2].split("=", 1)[1]).write_text(json.dumps(doc))
    refused(tmp_path, monkeypatch, capsys, args, "captions.json, row 2: ", rule)


def test_bidi_and_zero_width_stripped_and_recorded_or_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    args = coco_with(tmp_path, "x.jpg", jpeg(seed=3))
    doc = json.loads(Path(args[2].split("=", 1)[1]).read_text())
    doc["annotations"][1]["caption"] = "  a \u202eevil\u202c cat\u200b  "
    Path(args[2].split("=", 1)[1]).write_text(json.dumps(doc))
    assert run(tmp_path, monkeypatch, *args, "data.ingest.split=train") == 0
    row = manifests(tmp_path, "image")["train"].set_index("id").loc["coco-11"]
    assert row["caption"] == "a evil cat"
    assert row["conversion"] == "caption: 3 bidi/zero-width characters stripped"
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        [*args, "data.limits.invisible_chars=refuse"],
        "row 2: caption holds no bidirectional or zero-width characters",
        "\\u202e",
    )


# ------------------------------------------------------------------------------------------ DisCRn release
def _released(n: int, start: float = 0.0) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "sample_ids": [f"s{i}a", f"s{i}b"],
            "captions": [f"a {i}", f"b {i}"],
            "question": "which entity is larger",
            "label": i % 2,
            "start_seconds": [start, start],
        }
        for i in range(n)
    ]


def test_discrn_release_one_pair_and_patterns(tmp_path: Path, monkeypatch, capsys) -> None:
    rel = tmp_path / "release"
    write(rel / "audiocaps.json", json.dumps(_released(4, 30.0)))
    for i in range(4):
        write(rel / "aud" / f"s{i}a_30.wav", sound())
        write(rel / "aud" / f"s{i}b_30.wav", sound())
        write(rel / "vid" / f"s{i}a_30.mp4", clip())
        write(rel / "vid" / f"s{i}b_30.mp4", clip())
    args = [
        "discrn",
        "data.discrn.source=released",
        f"data.discrn.released.audio_video={rel / 'audiocaps.json'}",
        "data.discrn.released_patterns.audio='{id}_{start}.wav'",
        f"data.discrn.media_roots.audio={rel / 'aud'}",
        f"data.discrn.media_roots.video={rel / 'vid'}",
        "data.discrn.require_media=true",
    ]
    assert run(tmp_path, monkeypatch, *args) == 0
    assert "discrn audio_video test: 4 examples" in capsys.readouterr().out
    records = json.loads((tmp_path / "data/discrn/audio_video/test.json").read_text())
    assert all(
        m.endswith("_30.wav")
        for r in records
        for m, mod in zip(r["media"], r["modalities"])
        if mod == "audio"
    )
    assert not (tmp_path / "data/discrn/image_pc").exists()  # only the pair whose file was given

    # one refused part: nothing written, not even the pair that passed
    write(
        rel / "objaverse.json",
        json.dumps(
            _released(2)[:1]
            + [{"sample_ids": ["../x", "y"], "captions": ["a", "b"], "question": "q", "label": 0}]
        ),
    )
    (tmp_path / "data/discrn").rename(tmp_path / "old_discrn")
    refused(
        tmp_path,
        monkeypatch,
        capsys,
        [*args, f"data.discrn.released.image_pc={rel / 'objaverse.json'}"],
        "objaverse.json, row 2: sample_ids are letters, digits, '_' or '-' ('../x')",
    )
    write(rel / "vid" / "s0a_30.mp4", b"\x00\x00\x00\x18ftypmp42garbage")
    refused(
        tmp_path, monkeypatch, capsys, args, "s0a_30.mp4: video decodes completely", "audiocaps.json row 1"
    )
