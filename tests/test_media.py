"""Round trips of the format layer: media codecs, manifests, shards (local and S3)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xib.data import media
from xib.data.manifest import (
    COLUMNS,
    MANIFEST_SCHEMA,
    manifest_path,
    read_manifest,
    sha256,
    write_manifest,
)
from xib.data.shards import ShardWriter, iter_items, read_media_bytes
from xib.errors import DataError


def _video(frames: int = 5, size: int = 32) -> np.ndarray:
    video = np.full((frames, size, size, 3), 90, np.uint8)
    for t in range(frames):
        video[t, 8:20, 4 + 2 * t : 16 + 2 * t] = (220, 40, 40)
    return video


def test_image_round_trip_is_lossless() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    data = media.encode("image", image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(media.decode("image", data), image)


def test_image_rejects_bad_arrays_and_bytes() -> None:
    with pytest.raises(ValueError):
        media.encode("image", np.zeros((4, 4), np.uint8))
    with pytest.raises(media.MediaError):
        media.decode("image", b"\x89PNG\r\n\x1a\nnot really")


def test_audio_round_trip_keeps_rate_and_samples() -> None:
    t = np.arange(32000, dtype=np.float32) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = media.encode("audio", audio, sample_rate=16000)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    decoded, rate = media.decode_audio(data)
    assert rate == 16000 and decoded.dtype == np.float32 and decoded.shape == audio.shape
    assert np.abs(decoded - audio).max() < 1e-4
    np.testing.assert_array_equal(media.decode("audio", data), decoded)


def test_audio_truncated_and_nonfinite() -> None:
    data = media.encode_audio(np.zeros(1000, np.float32))
    with pytest.raises(media.MediaError, match="WAV data chunk is complete"):
        media.decode_audio(data[:-200])
    with pytest.raises(ValueError):
        media.encode_audio(np.array([0.0, np.nan], np.float32))


def test_pc_round_trip_npy_and_npz() -> None:
    pc = np.random.default_rng(1).standard_normal((8192, 3)).astype(np.float32)
    data = media.encode("pc", pc)
    assert data[:6] == b"\x93NUMPY"
    np.testing.assert_array_equal(media.decode("pc", data), pc)
    buf = io.BytesIO()
    np.savez(buf, points=pc.astype(np.float64))
    np.testing.assert_allclose(media.decode_pc(buf.getvalue()), pc)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(media.MediaError):
        media.decode_pc(pickled.getvalue())


def test_video_round_trip_keeps_frames_size_and_colours() -> None:
    video = _video()
    data = media.encode("video", video, fps=5)
    assert data[4:8] == b"ftyp"
    decoded, fps = media.decode_video_meta(data)
    assert decoded.shape == video.shape and decoded.dtype == np.uint8
    assert fps == pytest.approx(5.0)
    assert np.abs(decoded.astype(int) - video.astype(int)).mean() < 6
    np.testing.assert_array_equal(media.decode("video", data), decoded)


def test_video_rejects_odd_sizes_and_garbage() -> None:
    with pytest.raises(ValueError, match="even"):
        media.encode_video(np.zeros((2, 31, 32, 3), np.uint8))
    with pytest.raises(media.MediaError):
        media.decode_video(b"\x00\x00\x00\x18ftypmp42 garbage")


def test_manifest_schema_round_trip(xib_root: Path) -> None:
    from xib.config import load_config

    cfg = load_config()
    path = manifest_path(cfg, "audio", "train")
    assert path == xib_root / "data" / "world" / "audio" / "train" / "manifest.parquet"
    df = pd.DataFrame(
        {
            "id": ["audio-000000", "audio-000001"],
            "entity_id": ["e0", "e1"],
            "modality": "audio",
            "uri": ["shard-000000.tar#audio-000000.wav", "shard-000000.tar#audio-000001.wav"],
            "caption": ["a dog barks", "rain falls"],
            "split": "train",
            "sample_rate": [16000, 16000],
            "duration_s": [2.0, 1.5],
        }
    )
    write_manifest(df, path)
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]  # no temp leftovers
    import pyarrow.parquet as pq

    assert pq.read_schema(path).remove_metadata() == MANIFEST_SCHEMA
    back = read_manifest(path, strict=True)
    assert list(back.columns) == list(COLUMNS)
    assert back["sample_rate"].tolist() == [16000, 16000]
    assert back["width"].isna().all() and back["kind"].tolist() == ["", ""]
    with pytest.raises(DataError, match="required column"):
        write_manifest(df.drop(columns=["uri"]), path)
    with pytest.raises(DataError, match="manifest file exists"):
        read_manifest(path.with_name("nope.parquet"))


def test_shards_split_read_and_stream(tmp_path: Path) -> None:
    items = {f"pc-{i:06d}.npy": media.encode_pc(np.full((4, 3), i, np.float32)) for i in range(7)}
    with ShardWriter(tmp_path, max_items=3) as writer:
        uris = [writer.write(name, data) for name, data in items.items()]
    assert [p.name for p in writer.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert uris[3] == "shard-000001.tar#pc-000003.npy"
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in writer.shards]
    for uri, data in zip(uris, items.values()):
        assert read_media_bytes(uri, tmp_path) == data
    loose = tmp_path / "loose.npy"
    loose.write_bytes(items["pc-000000.npy"])
    # manifest order differs from shard order; one row points at a plain file
    df = pd.DataFrame({"id": list(items) + ["loose"], "uri": list(reversed(uris)) + ["loose.npy"]})
    seen = {row["id"]: data for row, data in iter_items(df, tmp_path)}
    assert set(seen) == set(df["id"])
    for item_id, uri in zip(df["id"], df["uri"]):
        assert seen[item_id] == read_media_bytes(uri, tmp_path)
    with pytest.raises(DataError, match="shard member exists"):
        read_media_bytes("shard-000000.tar#missing.npy", tmp_path)
    bad = pd.DataFrame({"id": ["a", "b"], "uri": [uris[0], "shard-000000.tar#gone.npy"]})
    with pytest.raises(DataError, match="row 1: shard member exists"):
        list(iter_items(bad, tmp_path))


def test_shard_writer_removes_everything_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, max_items=2) as writer:
            for i in range(5):
                writer.write(f"x-{i}.bin", b"data")
            raise RuntimeError("generation failed")
    assert list(tmp_path.iterdir()) == []


def test_shards_are_deterministic(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        with ShardWriter(tmp_path / sub, max_items=10) as writer:
            writer.write("k.png", media.encode_image(np.zeros((4, 4, 3), np.uint8)))
    assert sha256((tmp_path / "a/shard-000000.tar").read_bytes()) == sha256(
        (tmp_path / "b/shard-000000.tar").read_bytes()
    )
    with tarfile.open(tmp_path / "a/shard-000000.tar") as tar:
        assert tar.getnames() == ["k.png"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_read_media_bytes_from_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("moto")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import boto3

        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="media")
                break
            except Exception:
                time.sleep(0.1)
        image = media.encode_image(np.full((4, 4, 3), 7, np.uint8))
        client.put_object(Bucket="media", Key="img/a.png", Body=image)
        with ShardWriter(tmp_path, max_items=5) as writer:
            writer.write("a.png", image)
        client.put_object(Bucket="media", Key="shard-000000.tar", Body=writer.shards[0].read_bytes())
        assert read_media_bytes("s3://media/img/a.png", s3_endpoint_url=endpoint) == image
        assert read_media_bytes("s3://media/shard-000000.tar#a.png", s3_endpoint_url=endpoint) == image
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        assert read_media_bytes("s3://media/img/a.png") == image
        with pytest.raises(DataError, match="exists in S3"):
            read_media_bytes("s3://media/img/none.png", s3_endpoint_url=endpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)
