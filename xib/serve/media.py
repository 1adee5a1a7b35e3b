"""Media parts of a chat request: base64 from the request body only (a URL is never fetched, a
path never opened), held to the ingest rules (`data.validate`) before and after decoding."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import TYPE_CHECKING, Any

from xib.runtime.runner import decode_flac
from xib.serve.errors import bad, too_large

if TYPE_CHECKING:
    from xib.data.config import ValidateConfig

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S)
IMAGE_MIMES = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif", "image/bmp"}
FORMATS = {"audio": ("wav", "flac"), "video": ("mp4",), "pc": ("npy",)}


def b64(value: Any, where: str, limit: int) -> bytes:
    """Base64 text -> bytes, refusing more than `limit` decoded bytes before decoding them."""
    if not isinstance(value, str) or not value:
        raise bad(where, "must be a non-empty base64 string")
    if len(value) * 3 // 4 > limit + 3:
        raise too_large(
            where,
            f"media is about {len(value) * 3 // 4} bytes, at most {limit} (data.validate.max_media_bytes)",
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad(where, "is not valid base64") from None


def image_url(url: Any, where: str, limit: int) -> bytes:
    """The bytes of a `data:image/...;base64,` URL; any other URL is refused, never fetched."""
    if not isinstance(url, str) or not url:
        raise bad(where, "must be a data URL string")
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url[:12] else "a path"
        raise bad(
            where,
            f"only data: URLs (data:image/png;base64,...) are accepted; {scheme} is refused "
            "(the server never fetches a URL or opens a path)",
        )
    match = DATA_URL.match(url)
    if match is None:
        raise bad(where, "a data URL must be base64-encoded (data:image/png;base64,...)")
    mime = (match.group("mime") or "").lower()
    if mime and mime not in IMAGE_MIMES:
        raise bad(where, f"media type {mime} is not an image")
    return b64(match.group("data"), where, limit)


def decode_media(modality: str, data: bytes, fmt: str, where: str, vcfg: ValidateConfig) -> Any:
    """Decoded media as `Runner.encode_array` reads it, or a 400/413 naming `where` and the rule."""
    from xib.data import media as M

    if len(data) > vcfg.max_media_bytes:
        raise too_large(where, f"media is {len(data)} bytes, at most {vcfg.max_media_bytes} "
                               "(data.validate.max_media_bytes)")  # fmt: skip
    try:
        if modality == "image":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
            side = vcfg.max_image_side
            if max(width, height) > side:
                raise too_large(where, f"image is {width}x{height} pixels, at most {side} per side "
                                       "(data.validate.max_image_side)")  # fmt: skip
            return M.decode_image(data)
        if modality == "audio":
            wave, rate = decode_flac(data) if fmt == "flac" else M.decode_audio(data)
            seconds = wave.size / max(rate, 1)
            if seconds > vcfg.max_audio_seconds:
                raise too_large(where, f"audio is {seconds:.1f} s, at most {vcfg.max_audio_seconds} s "
                                       "(data.validate.max_audio_seconds)")  # fmt: skip
            if wave.size == 0:
                raise bad(where, "audio holds no samples")
            return wave, rate
        if modality == "video":
            frames, fps = M.decode_video_meta(data)
            seconds = len(frames) / fps if fps else 0.0
            if seconds > vcfg.max_video_seconds:
                raise too_large(where, f"video is {seconds:.1f} s, at most {vcfg.max_video_seconds} s "
                                       "(data.validate.max_video_seconds)")  # fmt: skip
            if len(frames) and max(frames.shape[1:3]) > vcfg.max_video_side:
                raise too_large(where, f"video frames are {frames.shape[2]}x{frames.shape[1]}, at most "
                                       f"{vcfg.max_video_side} per side (data.validate.max_video_side)")  # fmt: skip
            return frames
        points = M.decode_pc(data)
        limit = vcfg.max_abs_coordinate
        if points.size and float(abs(points).max()) > limit:
            raise bad(where, f"point coordinates must be within +-{limit} (data.validate.max_abs_coordinate)")
        return points
    except (ValueError, OSError, EOFError) as err:  # MediaError is a ValueError; PIL raises OSError
        raise bad(where, f"cannot read the {modality} data: {str(err).splitlines()[0][:200]}") from None
    except Exception as err:  # a decoder library's own error (PyAV, Pillow): still the client's bytes
        if type(err).__module__.split(".")[0] in {"av", "PIL"}:
            raise bad(where, f"cannot read the {modality} data: {type(err).__name__}") from None
        raise
