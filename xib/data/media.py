"""Media codecs: numpy arrays <-> the file formats real data sets use.

image  uint8 [H, W, 3]      <-> PNG (Pillow)
audio  float32 [T] in [-1,1] <-> 16-bit PCM mono WAV (written with stdlib `wave`, read with soundfile)
pc     float32 [N, 3]       <-> NPY (no pickles); `.npz` with one array is accepted on decode
video  uint8 [T, H, W, 3]   <-> MP4 (PyAV, mpeg4 part 2 by default, h264 on request), even H and W

Decoders raise `MediaError` (a ValueError) with a short reason; validation turns it into a DataError
naming the file and row.
"""

from __future__ import annotations

import functools
import io
import wave
from fractions import Fraction
from typing import Any, cast

import numpy as np

from xib.modalities import MODALITIES

EXTENSIONS = {"image": "png", "pc": "npy", "audio": "wav", "video": "mp4"}
DEFAULT_SAMPLE_RATE = 16000
DEFAULT_FPS = 5


class MediaError(ValueError):
    """Bytes that are not a valid medium of the expected kind."""


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


# ---------------------------------------------------------------------------------------------- image
def encode_image(array: np.ndarray, compress_level: int = 1) -> bytes:
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {array.dtype} {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def image_mode(data: bytes) -> str:
    """The Pillow mode of an image file (RGB, RGBA, L, ...) without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return str(img.mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MediaError(f"not a readable image: {err}") from None


def decode_image(data: bytes, convert: bool = True) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 [H, W, 3]. `convert=False` keeps the file's own channels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            image: Image.Image = img.convert("RGB") if convert and img.mode != "RGB" else img
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MediaError(f"not a readable image: {err}") from None
    return np.ascontiguousarray(array)


# ---------------------------------------------------------------------------------------------- audio
def encode_audio(array: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE) -> bytes:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"audio must be float32 [T], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("audio contains NaN or inf")
    pcm = np.round(np.clip(array, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.tobytes())
    return buf.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """WAV/FLAC bytes -> (float32 [T] mono in [-1, 1], sample rate), through libsndfile (soundfile).

    The shared media rules (xib/data/rules.py) with the default limits: PCM 8/16/24/32-bit, float,
    WAVE_FORMAT_EXTENSIBLE and FLAC decode; several channels are averaged to mono.
    """
    from xib.data.config import LimitsConfig
    from xib.data.rules import check_media
    from xib.errors import DataError

    try:
        samples, info = check_media("audio", data, LimitsConfig())
    except DataError as err:
        raise MediaError(
            f"not a readable audio file: {err.rule}" + (f" ({err.detail})" if err.detail else "")
        ) from None
    return samples, int(info["sample_rate"])


# ------------------------------------------------------------------------------------------ point cloud
def encode_pc(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"point cloud must be float32 [N, 3], got shape {array.shape}")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def decode_pc(data: bytes) -> np.ndarray:
    """NPY (or NPZ holding one array, as Cap3D ships) bytes -> float32 [N, 3+] (extra columns kept)."""
    try:
        loaded: Any = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = list(loaded.files)
                if not names:
                    raise MediaError("NPZ file holds no arrays")
                loaded = loaded[names[0]]
    except MediaError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise MediaError(f"not a readable NPY/NPZ array: {err}") from None
    array = np.asarray(loaded)
    if array.dtype.kind not in "fiu":
        raise MediaError(f"point cloud dtype {array.dtype} is not numeric")
    if array.ndim != 2 or array.shape[1] < 3:
        raise MediaError(f"point cloud shape {array.shape}; expected [N, 3]")
    return array.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- video
# mpeg4 (FFmpeg native) encodes a 32x32x5 clip ~8x faster than x264 at similar fidelity (qscale 2)
_VIDEO_CODECS = ("mpeg4", "libx264", "h264")


@functools.cache
def _video_codec() -> str:
    import av

    available = av.codecs_available
    for name in _VIDEO_CODECS:
        try:
            if name in available and av.Codec(name, "w"):
                return name
        except Exception:  # a decoder-only build: try the next one
            continue
    raise RuntimeError(f"PyAV has no MP4 video encoder (tried {_VIDEO_CODECS})")


def encode_video(array: np.ndarray, fps: int = DEFAULT_FPS, codec: str | None = None) -> bytes:
    """uint8 [T, H, W, 3] -> MP4. H and W must be even (yuv420p). Lossy, frame count preserved."""
    import av

    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
        raise ValueError(f"video must be uint8 [T, H, W, 3], got {array.dtype} {array.shape}")
    frames, height, width, _ = array.shape
    if frames < 1:
        raise ValueError("video needs at least one frame")
    if height % 2 or width % 2:
        raise ValueError(f"video height and width must be even for yuv420p, got {height}x{width}")
    codec = codec or _video_codec()
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        # `codec` is a runtime string, so PyAV's stubs can only say "some stream"; it names a video codec
        stream = cast("av.VideoStream", container.add_stream(codec, rate=Fraction(int(fps), 1)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec in ("libx264", "h264"):
            # near-lossless, no lookahead/B-frames: tiny clips encode fast and keep their colours
            stream.options = {"preset": "ultrafast", "crf": "10", "tune": "zerolatency"}
        else:
            stream.bit_rate = max(200_000, width * height * int(fps) * 12)
            stream.options = {"qscale": "2"}
        stream.thread_count = 1
        for frame in array:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_video_meta(data: bytes) -> tuple[np.ndarray, float]:
    """MP4 bytes -> (uint8 [T, H, W, 3], frames per second)."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise MediaError("file has no video stream")
            stream = container.streams.video[0]
            stream.thread_count = 1
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        raise MediaError(f"not a readable MP4 video: {err}") from None
    if not frames:
        raise MediaError("video has zero decodable frames")
    return np.stack(frames).astype(np.uint8, copy=False), float(rate) if rate else 0.0


def decode_video(data: bytes) -> np.ndarray:
    return decode_video_meta(data)[0]


# -------------------------------------------------------------------------------------------- generic
def encode(modality: str, array: np.ndarray, **meta: Any) -> bytes:
    """Encode a modality's array; `sample_rate=` for audio, `fps=` for video."""
    _check_modality(modality)
    if modality == "image":
        return encode_image(array)
    if modality == "audio":
        return encode_audio(array, sample_rate=int(meta.get("sample_rate", DEFAULT_SAMPLE_RATE)))
    if modality == "pc":
        return encode_pc(array)
    return encode_video(array, fps=int(meta.get("fps", DEFAULT_FPS)))


def decode(modality: str, data: bytes) -> np.ndarray:
    """Decode a modality's bytes to its array (audio: samples only; see `decode_audio`)."""
    _check_modality(modality)
    if modality == "image":
        return decode_image(data)
    if modality == "audio":
        return decode_audio(data)[0]
    if modality == "pc":
        return decode_pc(data)
    return decode_video(data)
