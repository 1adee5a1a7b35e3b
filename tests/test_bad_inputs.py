"""A corpus of bad inputs: each one gets a single clear line (file, row, rule) from `xib validate`,
exit status 1, no traceback, and no output beyond the (atomically written) failure report."""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xib.cli import main
from xib.data import media
from xib.data.manifest import read_manifest, sha256, write_manifest
from xib.data.sample import write_sample_corpus

WORLD = "data/world"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xib.config import load_config

    root = tmp_path_factory.mktemp("corpus")
    write_sample_corpus(root / "data", load_config().data.world, items={m: 4 for m in media.MODALITIES})
    return root


# --------------------------------------------------------------------------------------- mutations
def manifest(root: Path, modality: str, split: str = "train") -> Path:
    return root / WORLD / modality / split / "manifest.parquet"


def edit(root: Path, modality: str, change: Callable[[pd.DataFrame], None], split: str = "train") -> None:
    path = manifest(root, modality, split)
    df = read_manifest(path)
    change(df)
    write_manifest(df, path)


def replace_member(
    root: Path, modality: str, row: int, data: bytes, split: str = "train", checksum: bool = True
) -> None:
    """Swap one row's medium inside its shard (and, by default, keep the manifest checksum in step)."""
    path = manifest(root, modality, split)
    df = read_manifest(path)
    shard_name, member = df.loc[row, "uri"].split("#")
    shard = path.parent / shard_name
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for info, body in members:
            body = data if info.name == member else body
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    if checksum:
        df.loc[row, "checksum"] = sha256(data)
        write_manifest(df, path)


def write_raw(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    body = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    chunks = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def empty_mp4() -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(5, 1))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    return buf.getvalue()


def rgba_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 4), np.uint8), mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def tone(seconds: float, rate: int) -> np.ndarray:
    return (0.2 * np.sin(np.arange(int(seconds * rate)) / 5)).astype(np.float32)


def corrupt_image(r: Path) -> None:
    good = media.encode_image(np.zeros((32, 32, 3), np.uint8))
    replace_member(r, "image", 1, good[:40] + b"\x00" * 200)


def truncated_wav(r: Path) -> None:
    replace_member(r, "audio", 0, media.encode_audio(tone(2, 16000))[:-5000])


def nan_pc(r: Path) -> None:
    pc = np.zeros((8192, 3), np.float32)
    pc[17, 1] = np.nan
    replace_member(r, "pc", 2, media.encode_pc(pc))


def wrong_point_count(r: Path) -> None:
    replace_member(r, "pc", 1, media.encode_pc(np.zeros((100, 3), np.float32)))


def pc_four_columns(r: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros((8192, 4), np.float32))
    replace_member(r, "pc", 0, buf.getvalue())


def pc_out_of_range(r: Path) -> None:
    replace_member(r, "pc", 2, media.encode_pc(np.full((8192, 3), 1e6, np.float32)))


def pickled_pc(r: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"points": 1}], dtype=object), allow_pickle=True)
    replace_member(r, "pc", 1, buf.getvalue())


def empty_caption(r: Path) -> None:
    edit(r, "image", lambda df: df.__setitem__("caption", ["ok", "", "ok"]))


def blank_caption(r: Path) -> None:
    edit(r, "audio", lambda df: df.__setitem__("caption", ["ok", "ok", "   "]))


def long_caption(r: Path) -> None:
    edit(r, "pc", lambda df: df.__setitem__("caption", ["ok", "x" * 2001, "ok"]))


def missing_file(r: Path) -> None:
    edit(r, "video", lambda df: df.__setitem__("uri", [df["uri"][0], "clips/absent.mp4", df["uri"][2]]))


def missing_shard_member(r: Path) -> None:
    edit(
        r,
        "audio",
        lambda df: df.__setitem__("uri", [df["uri"][0], df["uri"][1], "shard-000000.tar#gone.wav"]),
    )


def missing_shard(r: Path) -> None:
    (manifest(r, "image", "val").parent / "shard-000000.tar").unlink()


def duplicate_id(r: Path) -> None:
    edit(r, "pc", lambda df: df.__setitem__("id", ["pc-000000", "pc-000001", "pc-000000"]))


def wrong_sample_rate(r: Path) -> None:
    replace_member(r, "audio", 1, media.encode_audio(tone(2, 8000), sample_rate=8000))


def zero_frame_video(r: Path) -> None:
    replace_member(r, "video", 2, empty_mp4())


def too_few_frames_medium(r: Path) -> None:
    replace_member(r, "video", 1, media.encode_video(np.zeros((2, 32, 32, 3), np.uint8), fps=5))


def too_few_frames_manifest(r: Path) -> None:
    edit(r, "video", lambda df: df.__setitem__("frames", pd.array([5, 5, 3], dtype="Int32")))


def non_utf8_caption(r: Path) -> None:
    path = manifest(r, "image")
    table = pq.read_table(path)
    captions = pa.array([b"fine", b"caf\xe9 au lait", b"fine"], type=pa.binary())
    write_raw(path, table.set_column(table.schema.get_field_index("caption"), "caption", captions))


def ansi_caption(r: Path) -> None:
    edit(r, "audio", lambda df: df.__setitem__("caption", ["ok", "\x1b[2Jcleared", "ok"]))


def fifo_medium(r: Path) -> None:
    import os

    folder = manifest(r, "video").parent / "clips"
    folder.mkdir()
    os.mkfifo(folder / "fifo.mp4")  # opening it would block validate forever
    edit(r, "video", lambda df: df.__setitem__("uri", [df["uri"][0], "clips/fifo.mp4", df["uri"][2]]))


def oversized_file(r: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    replace_member(r, "image", 0, media.encode_image(noise, compress_level=0))
    edit(
        r,
        "image",
        lambda df: (
            df.__setitem__("width", pd.array([1400, 32, 32], dtype="Int32")),
            df.__setitem__("height", pd.array([1400, 32, 32], dtype="Int32")),
        ),
    )


def checksum_mismatch(r: Path) -> None:
    replace_member(r, "audio", 2, media.encode_audio(tone(2, 16000)), checksum=False)


def bad_checksum_format(r: Path) -> None:
    edit(r, "video", lambda df: df.__setitem__("checksum", [df["checksum"][0], "abc123", df["checksum"][2]]))


def split_leak(r: Path) -> None:
    # entity-000000 is in train; its audio item claims val
    edit(r, "audio", lambda df: df.__setitem__("entity_id", ["entity-000000"]), split="val")


def bad_split_value(r: Path) -> None:
    edit(r, "pc", lambda df: df.__setitem__("split", ["train", "training", "train"]))


def split_not_folder(r: Path) -> None:
    edit(r, "image", lambda df: df.__setitem__("split", ["train", "train", "test"]))


def missing_column(r: Path) -> None:
    path = manifest(r, "video")
    write_raw(path, pq.read_table(path).drop_columns(["checksum"]))


def wrong_column_type(r: Path) -> None:
    path = manifest(r, "image")
    table = pq.read_table(path)
    width = pa.array(["32", "32", "32"])
    write_raw(path, table.set_column(table.schema.get_field_index("width"), "width", width))


def wrong_modality(r: Path) -> None:
    edit(r, "image", lambda df: df.__setitem__("modality", ["image", "image", "audio"]))


def negative_duration(r: Path) -> None:
    edit(r, "audio", lambda df: df.__setitem__("duration_s", [2.0, -2.0, 2.0]))


def inf_in_audio(r: Path) -> None:
    samples = tone(2, 16000)
    samples[100] = np.inf
    replace_member(r, "audio", 0, float_wav(samples))


def short_audio(r: Path) -> None:
    replace_member(r, "audio", 2, media.encode_audio(tone(0.1, 16000)))


def wrong_image_channels(r: Path) -> None:
    replace_member(r, "image", 2, rgba_png())


def metadata_mismatch(r: Path) -> None:
    edit(r, "image", lambda df: df.__setitem__("width", pd.array([32, 64, 32], dtype="Int32")))


def null_entity(r: Path) -> None:
    path = manifest(r, "pc")
    table = pq.read_table(path)
    entities = pa.array(["entity-000000", None, "entity-000002"], type=pa.string())
    field = pa.field("entity_id", pa.string(), nullable=True)
    write_raw(path, table.set_column(table.schema.get_field_index("entity_id"), field, entities))


def unreadable_manifest(r: Path) -> None:
    manifest(r, "video", "val").write_bytes(b"PAR1 this is not parquet")


def empty_medium(r: Path) -> None:
    replace_member(r, "pc", 0, b"")


# (mutation, manifest modality/split, row or None, words of the rule)
CASES = {
    "corrupt_image": (corrupt_image, "image/train", 1, "image decodes completely"),
    "truncated_wav": (truncated_wav, "audio/train", 0, "WAV data chunk is complete"),
    "nan_point_cloud": (nan_pc, "pc/train", 2, "point coordinates are finite"),
    "wrong_point_count": (wrong_point_count, "pc/train", 1, "point cloud has 8192 points"),
    "pc_four_columns": (pc_four_columns, "pc/train", 0, "point cloud has shape [N, 3]"),
    "pc_out_of_range": (pc_out_of_range, "pc/train", 2, "point coordinates lie within"),
    "pickled_pc": (pickled_pc, "pc/train", 1, "point cloud holds no pickled objects"),
    "empty_caption": (empty_caption, "image/train", 1, "caption has 1..2000 characters"),
    "blank_caption": (blank_caption, "audio/train", 2, "caption is not blank"),
    "long_caption": (long_caption, "pc/train", 1, "caption has 1..2000 characters"),
    "missing_file": (missing_file, "video/train", 1, "media file exists"),
    "missing_shard_member": (missing_shard_member, "audio/train", 2, "shard member exists"),
    "missing_shard": (missing_shard, "image/val", 0, "media file exists"),
    "duplicate_id": (duplicate_id, "pc/train", 2, "id is unique"),
    "wrong_sample_rate": (wrong_sample_rate, "audio/train", 1, "audio sample rate is 16000 Hz"),
    "zero_frame_video": (zero_frame_video, "video/train", 2, "video file has a video stream"),
    "too_few_frames_medium": (too_few_frames_medium, "video/train", 1, "video has 5..64 frames"),
    "too_few_frames_manifest": (too_few_frames_manifest, "video/train", 2, "frames is between 5 and 64"),
    "non_utf8_caption": (non_utf8_caption, "image/train", 1, "caption is valid UTF-8 text"),
    "ansi_caption": (ansi_caption, "audio/train", 1, "caption holds no control characters"),
    "fifo_medium": (fifo_medium, "video/train", 1, "media file is a regular file"),
    "oversized_file": (oversized_file, "image/train", 0, "media file is at most 5000000 bytes"),
    "checksum_mismatch": (checksum_mismatch, "audio/train", 2, "checksum matches the media bytes"),
    "bad_checksum_format": (bad_checksum_format, "video/train", 1, "checksum is a sha256 hex digest"),
    "split_leak": (split_leak, "audio/val", 0, "each entity_id is in one split only"),
    "bad_split_value": (bad_split_value, "pc/train", 1, "split is one of ['train', 'val', 'test']"),
    "split_not_folder": (split_not_folder, "image/train", 2, "split matches the manifest's folder"),
    "missing_column": (missing_column, "video/train", None, "manifest has column 'checksum'"),
    "wrong_column_type": (wrong_column_type, "image/train", None, "column 'width' has type int32"),
    "wrong_modality": (wrong_modality, "image/train", 2, "modality matches the manifest's folder"),
    "negative_duration": (negative_duration, "audio/train", 1, "duration_s is between 0.5 and 30.0"),
    "inf_in_audio": (inf_in_audio, "audio/train", 0, "audio samples are finite"),
    "short_audio": (short_audio, "audio/train", 2, "audio lasts 0.5..30.0 s"),
    "wrong_image_channels": (wrong_image_channels, "image/train", 2, "image has 3 channels (RGB)"),
    "metadata_mismatch": (metadata_mismatch, "image/train", 1, "manifest width matches the medium"),
    "null_entity": (null_entity, "pc/train", 1, "entity_id is not null"),
    "unreadable_manifest": (unreadable_manifest, "video/val", None, "manifest is a readable Parquet file"),
    "empty_medium": (empty_medium, "pc/train", 0, "media file is not empty"),
}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_corpus_is_valid(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "ok"
    shutil.copytree(corpus, root)
    monkeypatch.setenv("XIB_ROOT", str(root))
    assert main(["validate"]) == 0, capsys.readouterr().err
    assert "16 items ok" in capsys.readouterr().out


def test_there_are_at_least_20_kinds_of_bad_input() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_named_and_stops(
    name: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import json

    mutate, where, row, rule = CASES[name]
    root = tmp_path / name
    shutil.copytree(corpus, root)
    # a stale success report must not survive a failed run
    (root / "data/reports").mkdir(parents=True)
    (root / "data/reports/validate.json").write_text('{"ok": true}')
    mutate(root)
    before = snapshot(root)
    monkeypatch.setenv("XIB_ROOT", str(root))

    assert main(["validate"]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert "Traceback" not in captured.err
    assert line.startswith("xib validate: ")
    assert f"{WORLD}/{where}/manifest.parquet" in line, line
    if row is None:
        assert ", row " not in line, line
    else:
        assert f"manifest.parquet, row {row}: " in line, line
    assert rule in line, line
    assert captured.out == ""

    after = snapshot(root)
    report_files = {"data/reports/validate.json", "data/reports/validate.html"}
    assert set(after) - set(before) <= report_files  # nothing else written, no temp files
    assert {k: v for k, v in after.items() if k not in report_files} == {
        k: v for k, v in before.items() if k not in report_files
    }
    report = json.loads(after["data/reports/validate.json"])
    assert report["ok"] is False and rule in report["error"]
