"""One set of media rules, shared by `xib ingest`, `xib validate`, the released DisCRn converter and
(later) request media: `check_media(modality, data, limits) -> (array, info)` or one DataError.

Order of the checks, cheapest first, so a hostile file is refused before anything large is allocated:
  1. size on disk and non-empty;
  2. format sniffed from the magic bytes, against an explicit accepted set per modality
     (the file's extension is never trusted);
  3. limits read from the headers: pixels, frames, duration, samples, channels, points, the
     uncompressed size of NPY arrays and NPZ members, no pickled object arrays;
  4. a full decode that verifies integrity (PNG chunk CRCs, complete WAV data chunk, NPZ CRCs,
     every video frame), with the limits enforced again on what is actually decoded;
  5. the decoded values: finite, in range.

The array returned is the modality's standard form (image uint8 [H, W, 3], audio float32 [T] mono
in [-1, 1], point cloud float32 [N, 3], video uint8 [T, H, W, 3]); `info` holds the true source
values measured from the data and `info["converted"]` lists what was done to reach that form.
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from xib.errors import DataError

if TYPE_CHECKING:
    from xib.data.config import LimitsConfig

ACCEPTED = {
    "image": ("png", "jpeg"),
    "audio": ("wav", "flac"),
    "pc": ("npy", "npz"),
    "video": ("mp4",),
}
IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK")
AUDIO_SUBTYPES = ("PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
VIDEO_CODECS = ("h264", "hevc", "mpeg4")
_FLOAT32_MAX = float(np.finfo(np.float32).max)

# magic bytes -> format name; the unaccepted ones are named so the refusal says what the file is
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"fLaC", "flac"),
    (0, b"\x93NUMPY", "npy"),
    (0, b"PK\x03\x04", "npz"),
    (0, b"GIF8", "gif"),
    (0, b"BM", "bmp"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (0, b"\x1aE\xdf\xa3", "webm/mkv"),
    (0, b"%PDF", "pdf"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"\x80", "pickle"),
    (0, b"<", "text/markup"),
)


def sniff(data: bytes) -> str:
    """The format named by the file's leading bytes ('unknown' when none matches)."""
    if data[:4] == b"RIFF" and len(data) >= 12:
        return {b"WAVE": "wav", b"WEBP": "webp", b"AVI ": "avi"}.get(data[8:12], "riff")
    if data[4:8] == b"ftyp":
        return "mp4"
    for offset, magic, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return "unknown"


def _refuse(name: str, rule: str, detail: str = "") -> DataError:
    return DataError(name, rule, detail=detail)


def check_media(
    modality: str, data: bytes, limits: LimitsConfig, name: str = "<media>"
) -> tuple[np.ndarray, dict[str, Any]]:
    """Check and decode one medium (see the module docstring); DataError(name, rule) when it breaks one."""
    if modality not in ACCEPTED:
        raise ValueError(f"unknown modality {modality!r}")
    if not data:
        raise _refuse(name, "media file is not empty")
    if len(data) > limits.max_media_bytes:
        raise _refuse(name, f"media file is at most {limits.max_media_bytes} bytes", f"{len(data)} bytes")
    fmt = sniff(data)
    if fmt not in ACCEPTED[modality]:
        accepted = "/".join(f.upper() for f in ACCEPTED[modality])
        raise _refuse(name, f"{modality} file is {accepted} by its content (magic bytes)", f"found {fmt}")
    try:
        if modality == "image":
            return _image(data, fmt, limits, name)
        if modality == "audio":
            return _audio(data, fmt, limits, name)
        if modality == "pc":
            return _pc(data, fmt, limits, name)
        return _video(data, limits, name)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - the parsers of hostile bytes raise many types; each is a refusal
        raise _refuse(
            name, f"{modality} file decodes completely", f"{type(err).__name__}: {str(err)[:200]}"
        ) from None


# ---------------------------------------------------------------------------------------------- image
def _image(data: bytes, fmt: str, limits: LimitsConfig, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    converted: list[str] = []
    max_pixels = limits.max_image_pixels
    size = _image_size(data, fmt)  # from the header bytes, before any decoder sees the file
    if size is None:
        raise _refuse(name, "image header is readable", f"no {fmt.upper()} size found")
    if size[0] < 1 or size[1] < 1 or size[0] * size[1] > max_pixels:
        raise _refuse(name, f"image has at most {max_pixels} pixels", f"{size[0]}x{size[1]} in the header")
    errors = (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        Image.DecompressionBombError,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the orientation is then 1
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as img:
                width, height = img.size
                mode, frames = img.mode, int(getattr(img, "n_frames", 1))
                if width < 1 or height < 1 or width * height > max_pixels:
                    raise _refuse(
                        name, f"image has at most {max_pixels} pixels", f"{width}x{height} in the header"
                    )
                if frames != 1:
                    raise _refuse(name, "image is a single frame (no animation)", f"{frames} frames")
                if mode not in IMAGE_MODES:
                    raise _refuse(name, f"image mode is one of {', '.join(IMAGE_MODES)}", f"mode {mode}")
                if fmt == "png":
                    img.verify()  # every chunk's CRC
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as img:
                img.load()
                orientation = int(img.getexif().get(0x0112, 1) or 1)
                out: Image.Image = img
                if orientation != 1:
                    out = ImageOps.exif_transpose(img)
                    converted.append(f"EXIF orientation {orientation} applied")
                if out.mode != "RGB":
                    out, how = _to_rgb(out)
                    converted.append(f"{mode} -> RGB{how}")
                array = np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
    except DataError:
        raise
    except Image.DecompressionBombError as err:
        raise _refuse(name, f"image has at most {max_pixels} pixels", str(err)[:120]) from None
    except UnidentifiedImageError:
        raise _refuse(name, "image decodes completely", f"Pillow cannot read this {fmt.upper()}") from None
    except errors as err:
        raise _refuse(name, "image decodes completely", f"{type(err).__name__}: {str(err)[:200]}") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise _refuse(name, "image decodes to RGB pixels", f"shape {array.shape}")
    info = {"format": fmt, "width": width, "height": height, "mode": mode, "orientation": orientation}
    return array, {**info, "converted": converted}


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the PNG IHDR or the JPEG start-of-frame marker."""
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            return int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(
                data[pos + 5 : pos + 7], "big"
            )
        if length < 2:
            return None
        pos += 2 + length
    return None


def _to_rgb(img: Any) -> tuple[Any, str]:
    """RGB pixels; transparency is composited over white (what a viewer shows), not dropped."""
    from PIL import Image

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), " (alpha over white)"
    return img.convert("RGB"), ""


# ---------------------------------------------------------------------------------------------- audio
def _riff_check(data: bytes, name: str) -> None:
    """WAV chunks walked from their headers: fmt and data present, the data chunk complete."""
    pos, has_fmt = 12, False
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            has_fmt = True
        elif chunk == b"data":
            held = len(data) - pos - 8
            if size > held and size != 0xFFFFFFFF:  # 0xFFFFFFFF: a streamed WAV of unknown length
                raise _refuse(name, "WAV data chunk is complete", f"declares {size} bytes, holds {held}")
            if not has_fmt:
                break
            return
        pos += 8 + size + (size & 1)
    raise _refuse(name, "WAV has a fmt chunk before its data chunk")


def _audio(data: bytes, fmt: str, limits: LimitsConfig, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    import soundfile as sf

    if fmt == "wav":
        _riff_check(data, name)
    try:
        header = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _refuse(name, "audio header is readable", str(err)) from None
    subtype, channels, rate, declared = (
        str(header.subtype),
        int(header.channels),
        int(header.samplerate),
        int(header.frames),
    )
    if subtype not in AUDIO_SUBTYPES:
        raise _refuse(name, f"audio encoding is one of {', '.join(AUDIO_SUBTYPES)}", subtype)
    if not 1 <= channels <= limits.max_audio_channels:
        raise _refuse(name, f"audio has 1..{limits.max_audio_channels} channels", f"{channels}")
    lo, hi = limits.min_sample_rate, limits.max_sample_rate
    if not lo <= rate <= hi:
        raise _refuse(name, f"audio sample rate is {lo}..{hi} Hz", f"{rate} Hz")
    max_frames = min(limits.max_audio_samples // channels, int(limits.max_audio_seconds * rate))
    if declared > max_frames:
        raise _refuse(
            name,
            f"audio lasts at most {limits.max_audio_seconds:g} s and {limits.max_audio_samples} samples",
            f"{declared} frames x {channels} channels at {rate} Hz in the header",
        )
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            frames = handle.read(frames=max_frames + 1, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _refuse(name, "audio decodes completely", str(err)) from None
    if len(frames) > max_frames:
        raise _refuse(name, f"audio lasts at most {limits.max_audio_seconds:g} s", "decoded longer")
    if fmt == "flac" and 0 < len(frames) < declared:
        raise _refuse(name, "audio decodes completely", f"{len(frames)} of {declared} frames")
    if len(frames) == 0:
        raise _refuse(name, "audio has at least one sample")
    if not np.all(np.isfinite(frames)):
        raise _refuse(
            name, "audio samples are finite", f"{int(np.sum(~np.isfinite(frames)))} NaN/inf samples"
        )
    peak = float(np.abs(frames).max())
    if peak > 1.0:
        raise _refuse(name, "audio samples lie in [-1, 1]", f"peak {peak:.3g}")
    converted = []
    if channels > 1:
        samples = frames.mean(axis=1, dtype=np.float32)
        converted.append(f"downmix {channels} -> 1 channel")
    else:
        samples = frames[:, 0]
    info = {
        "format": fmt,
        "subtype": subtype,
        "sample_rate": rate,
        "channels": channels,
        "frames": len(frames),
        "duration_s": len(frames) / rate,
        "converted": converted,
    }
    return np.ascontiguousarray(samples, dtype=np.float32), info


# ---------------------------------------------------------------------------------------- point cloud
def _npy_header(handle: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f"NPY version {version}")
    except (
        ValueError,
        OSError,
        EOFError,
        SyntaxError,
        TypeError,
        KeyError,
        zipfile.BadZipFile,
        zlib.error,
    ) as err:
        raise _refuse(name, "NPY header is readable", str(err)[:200]) from None
    return tuple(int(s) for s in shape), dtype


def _check_header(shape: tuple[int, ...], dtype: np.dtype, limits: LimitsConfig, name: str) -> None:
    if dtype.hasobject:
        raise _refuse(name, "point cloud holds no pickled objects (object arrays)", str(dtype))
    if dtype.kind not in "fiu" or dtype.itemsize > 8:
        raise _refuse(name, "point cloud is an integer or float array", str(dtype))
    if len(shape) != 2 or shape[1] < 3:
        raise _refuse(name, "point cloud has shape [N, 3+]", f"shape {shape}")
    if shape[0] > limits.max_points:
        raise _refuse(name, f"point cloud has at most {limits.max_points} points", f"{shape[0]} points")
    nbytes = shape[0] * shape[1] * dtype.itemsize
    if nbytes > limits.max_array_bytes:
        raise _refuse(name, f"array is at most {limits.max_array_bytes} bytes", f"{nbytes} bytes")


def _pc(data: bytes, fmt: str, limits: LimitsConfig, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    member = ""
    try:
        if fmt == "npy":
            shape, dtype = _npy_header(io.BytesIO(data), name)
            _check_header(shape, dtype, limits, name)
            raw = data
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir()]
                chosen = next((i for i in infos if i.filename == "arr_0.npy"), None)
                if chosen is None and len(infos) == 1:
                    chosen = infos[0]
                if chosen is None:
                    names = [i.filename for i in infos][:5]
                    raise _refuse(name, "NPZ holds one array or one named arr_0", f"members {names}")
                member = chosen.filename
                limit = limits.max_array_bytes + 4096  # the array and its NPY header
                if chosen.file_size > limit:
                    raise _refuse(
                        name,
                        f"NPZ member is at most {limit} bytes uncompressed",
                        f"{member}: {chosen.file_size}",
                    )
                with archive.open(chosen) as handle:
                    shape, dtype = _npy_header(handle, name)
                _check_header(shape, dtype, limits, name)
                raw = archive.read(chosen)  # at most file_size bytes; the CRC is checked
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except DataError:
        raise
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        RuntimeError,
        NotImplementedError,
        KeyError,
    ) as err:
        raise _refuse(
            name, "point cloud decodes completely", f"{type(err).__name__}: {str(err)[:200]}"
        ) from None
    if array.shape != shape:
        raise _refuse(name, "point cloud decodes completely", f"shape {array.shape}, header {shape}")
    if shape[0] == 0:
        raise _refuse(name, "point cloud has at least one point")
    xyz = array[:, :3]
    if not np.all(np.isfinite(xyz)):
        raise _refuse(
            name, "point coordinates are finite", f"{int(np.sum(~np.isfinite(xyz)))} NaN/inf values"
        )
    peak = float(np.abs(xyz).max())
    if peak > _FLOAT32_MAX:
        raise _refuse(name, "point coordinates fit float32", f"max |x| {peak:.3g}")
    converted = []
    if shape[1] > 3:
        converted.append(f"xyz of {shape[1]} columns kept")
    if dtype != np.dtype("<f4") and dtype != np.dtype("=f4"):
        converted.append(f"{dtype.str} -> <f4")
    info = {
        "format": fmt,
        "dtype": dtype.str,
        "points": shape[0],
        "columns": shape[1],
        "converted": converted,
    }
    if member:
        info["member"] = member
    return np.ascontiguousarray(xyz, dtype=np.float32), info


# ---------------------------------------------------------------------------------------------- video
def _video_header(stream: Any, name: str, limits: LimitsConfig) -> tuple[str, int, int, int]:
    """(codec, width, height, most frames allowed) from the stream's header, refused before decoding."""
    max_frames, max_pixels = limits.max_video_frames, limits.max_video_pixels
    max_seconds, max_bytes = limits.max_video_seconds, limits.max_array_bytes
    if stream.codec_context is None:  # a stream whose codec FFmpeg could not open
        raise _refuse(name, "video stream has a decodable codec", "none found")
    codec = str(stream.codec_context.name)
    if codec not in VIDEO_CODECS:
        raise _refuse(name, f"video codec is one of {', '.join(VIDEO_CODECS)}", codec)
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if width * height > max_pixels:
        raise _refuse(
            name, f"video frames have at most {max_pixels} pixels", f"{width}x{height} in the header"
        )
    declared = int(stream.frames or 0)
    frame_bytes = max(width * height * 3, 1)
    frame_cap = min(max_frames, max_bytes // frame_bytes)
    if declared > frame_cap:
        raise _refuse(
            name,
            f"video has at most {frame_cap} frames of {width}x{height}",
            f"{declared} in the header",
        )
    seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
    if seconds > max_seconds:
        raise _refuse(name, f"video lasts at most {max_seconds:g} s", f"{seconds:.1f} s in the header")
    return codec, width, height, frame_cap


def _video(data: bytes, limits: LimitsConfig, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    import av

    max_seconds = limits.max_video_seconds
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if "mp4" not in str(container.format.name).split(","):
                raise _refuse(name, "video container is MP4", str(container.format.name))
            if not container.streams.video:
                raise _refuse(name, "video file has a video stream")
            stream = container.streams.video[0]
            stream.thread_count = 1
            codec, width, height, frame_cap = _video_header(stream, name, limits)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = []
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (width, height):
                    raise _refuse(
                        name,
                        "video frames keep one size",
                        f"{frame.width}x{frame.height} after {width}x{height}",
                    )
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) > frame_cap:
                    raise _refuse(
                        name, f"video has at most {frame_cap} frames of {width}x{height}", "decoded more"
                    )
    except DataError:
        raise
    except (
        av.error.FFmpegError,
        OSError,
        ValueError,
        IndexError,
        TypeError,
        ZeroDivisionError,
        OverflowError,
    ) as err:
        raise _refuse(name, "video decodes completely", f"{type(err).__name__}: {str(err)[:200]}") from None
    if not frames:
        raise _refuse(name, "video has at least one decodable frame")
    fps = float(rate) if rate else 0.0
    duration = len(frames) / fps if fps else 0.0
    if duration > max_seconds:
        raise _refuse(name, f"video lasts at most {max_seconds:g} s", f"{duration:.1f} s decoded")
    info = {
        "format": "mp4",
        "codec": codec,
        "width": width,
        "height": height,
        "frames": len(frames),
        "fps": fps,
        "duration_s": duration,
        "converted": [],
    }
    return np.stack(frames).astype(np.uint8, copy=False), info
