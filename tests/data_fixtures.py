"""Media and annotation files in the released layouts, made at test time (tests/test_intake*.py)."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from xib.data import media


# ---------------------------------------------------------------------------------------------- images
def jpeg(
    width: int = 40, height: int = 32, seed: int = 0, progressive: bool = False, orientation: int = 0
) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    kwargs: dict = {"format": "JPEG", "quality": 90}
    if progressive:
        kwargs["progressive"] = True
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, **kwargs)
    return buf.getvalue()


def png(mode: str = "RGB", width: int = 24, height: int = 20, interlace: bool = False) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    if mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), mode="RGBA")
    else:
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        if mode == "P":
            img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        elif mode == "L":
            img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    return _interlaced(data) if interlace else data


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos < len(data):
        size = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]))
        pos += 12 + size
    return out


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value & 0xFFFFFFFF)


def _interlaced(data: bytes) -> bytes:
    """The same image written Adam7-interlaced (Pillow writes only non-interlaced PNGs)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    pixels = np.asarray(img)
    height, width = pixels.shape[:2]
    # Adam7: (first column, first row, column step, row step) of each pass
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def png_bad_crc() -> bytes:
    data = png()
    chunks = _chunks(data)
    body = b"".join(_chunk(k, b, crc=zlib.crc32(k + b) ^ 1 if k == b"IDAT" else None) for k, b in chunks)
    return data[:8] + body


def png_pixel_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose header declares width x height pixels (10 G at the default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------- audio
def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def sound(
    seconds: float = 1.0, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16", fmt: str = "WAV"
) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(seconds, rate, channels), rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def wav_extra_chunks(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A WAV with a LIST chunk between fmt and data, and an odd-sized junk chunk (padded)."""
    data = sound(seconds, rate)
    fmt_end = 12 + 8 + struct.unpack("<I", data[16:20])[0]
    extra = (
        b"LIST"
        + struct.pack("<I", 12)
        + b"INFOISFT\x00\x00\x00\x00"
        + b"junk"
        + struct.pack("<I", 3)
        + b"abc\x00"
    )
    body = data[12:fmt_end] + extra + data[fmt_end:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


# ------------------------------------------------------------------------------------------ point clouds
def npz(points: np.ndarray, key: str = "arr_0", compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **{key: points})
    return buf.getvalue()


def cloud(n: int = 8192, columns: int = 6, dtype: str = "<f4", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, columns)).astype(dtype)


# ---------------------------------------------------------------------------------------------- video
def clip(frames: int = 6, side: int = 32, fps: int = 5, codec: str | None = None) -> bytes:
    pixels = np.zeros((frames, side, side, 3), np.uint8)
    pixels[:, 4:20, 4:20] = (200, 40, 90)
    return media.encode_video(pixels, fps=fps, codec=codec)


# ------------------------------------------------------------------------------------------- layouts
def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def cap3d_layout(root: Path, n: int = 4, views: tuple[int, ...] = (0, 2)) -> tuple[Path, list[str]]:
    """Cap3D as released: headerless captions CSV, objaverse_pc_parallel/<uid>/<uid>_8192.npz (arr_0,
    xyz+rgb), rendered views for the objects in `views`. Object 1 is float64 big-endian."""
    uids = [f"{i:02d}ab{i:028x}" for i in range(n)]
    rows = []
    for i, uid in enumerate(uids):
        dtype = ">f8" if i == 1 else "<f4"
        write(root / "objaverse_pc_parallel" / uid / f"{uid}_8192.npz", npz(cloud(8192, 6, dtype, seed=i)))
        rows.append([uid, f"a 3D model of a chair, style {i}"])
        if i in views:
            write(
                root / "compressed_imgs_view2" / "Cap3D_imgs_view2" / f"{uid}_2.jpeg",
                jpeg(48, 48, seed=i, progressive=True),
            )
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    write(root / "Cap3D_automated_Objaverse_full.csv", buf.getvalue())
    return root / "Cap3D_automated_Objaverse_full.csv", uids


AUDIOCAPS_HEADER = ["audiocap_id", "youtube_id", "start_time", "caption"]


def audiocaps_layout(root: Path, ext: str = "wav") -> dict[str, list[list[str]]]:
    """AudioCaps as released: train.csv, val.csv, test.csv (test: 5 captions per clip) and media in
    audio/<split>/<youtube_id>_<start_time>.<ext>, in the variants real downloads hold."""
    splits = {
        "train": [["1", "-dash_start0", "30", "a dog barks"], ["2", "plainid0001", "0", "rain falls"]],
        "val": [["3", "valclip0001", "10", "a car passes\nslowly"]],  # a quoted newline in a caption
        "test": [[str(10 + k), "testclip001", "20", f"people talk, take {k}"] for k in range(5)],
    }
    variants = {
        "-dash_start0_30": sound(1.0, 44100, 2, "PCM_24", "WAV"),  # 24-bit stereo 44.1 kHz
        "plainid0001_0": sound(1.0, 16000, 1, "PCM_16", "WAVEX"),  # WAVE_FORMAT_EXTENSIBLE
        "valclip0001_10": wav_extra_chunks(1.0, 16000),
        "testclip001_20": sound(1.0, 22050, 1, "FLOAT", "WAV"),
    }
    if ext == "flac":
        variants = {
            k: sound(1.0, 16000 if i else 44100, 1 + (i == 0), "PCM_16" if i else "PCM_24", "FLAC")
            for i, k in enumerate(variants)
        }
    for split, rows in splits.items():
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(AUDIOCAPS_HEADER)
        writer.writerows(rows)
        write(root / "dataset" / f"{split}.csv", buf.getvalue())
        for row in rows:
            name = f"{row[1]}_{row[2]}"
            write(root / "audio" / split / f"{name}.{ext}", variants[name])
    return splits


def coco_layout(root: Path) -> Path:
    """COCO captions JSON with images in the variants real photos come in; two captions each."""
    files = {
        "progressive.jpg": jpeg(40, 32, progressive=True),
        "rotated.jpg": jpeg(40, 32, orientation=6),  # EXIF: rotate 90 degrees to display
        "palette.png": png("P"),
        "interlaced.png": png("RGB", interlace=True),
        "alpha.png": png("RGBA"),
    }
    images, annotations = [], []
    for i, (name, data) in enumerate(files.items()):
        write(root / "images" / name, data)
        images.append({"id": 100 + i, "file_name": name})
        for k in range(2):
            annotations.append(
                {"id": 1000 + 2 * i + k, "image_id": 100 + i, "caption": f"photo {i} take {k}"}
            )
    return write(root / "captions.json", json.dumps({"images": images, "annotations": annotations}))
