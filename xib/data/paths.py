"""Media paths from annotation files, resolved safely under their media root.

A name is refused when empty, holding a NUL byte, absolute, or holding a `..` component; its
resolved path (symlinks followed) must lie under the resolved root. Only regular files are read: a
FIFO (opening it blocks), a device (reading it never ends), a socket or a folder is refused by name
without being opened. A name that passes and has no file behind it is *absent* (`None`), which
`on_missing=skip` may skip.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from xib.data.text import INVISIBLE, is_control, quoted
from xib.errors import DataError


def check_name(name: str, file: str, row: int | str | None) -> None:
    if not name:
        raise DataError(file, "media file name is not empty", row=row)
    if "\x00" in name:
        raise DataError(file, "media file name holds no NUL byte", row=row, detail=quoted(name))
    if any(is_control(ch) or ch in INVISIBLE for ch in name):  # never echoed raw to a terminal
        raise DataError(
            file, "media file name holds no control or invisible characters", row=row, detail=quoted(name)
        )
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise DataError(file, "media file name is relative to the media folder", row=row, detail=quoted(name))
    if ".." in pure.parts or ".." in name.split("\\"):
        raise DataError(file, "media file name has no '..' component", row=row, detail=quoted(name))


def resolve_media(root: Path, name: str, file: str, row: int | str | None) -> Path | None:
    """The regular file `root/name`, or None when nothing is there; DataError for an unsafe name."""
    check_name(name, file, row)
    base = root.resolve()
    candidate = base / name
    resolved = candidate.resolve()  # follows symlinks, also dangling ones, as far as they go
    if not resolved.is_relative_to(base):
        raise DataError(
            file, "media path resolves inside the media folder (no symlink out)", row=row, detail=quoted(name)
        )
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DataError(
            str(candidate), "media file is readable", row=row, detail=err.strerror or ""
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(
            str(candidate),
            "media file is a regular file (not a FIFO, device, socket or folder)",
            row=row,
            detail=_kind(info.st_mode),
        )
    return resolved


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, max_bytes: int, row: int | str | None = None) -> bytes:
    """The bytes of a regular file, opened without following a symlink or blocking on a FIFO swapped in."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise DataError(str(path), "media file is readable", row=row, detail=err.strerror or "") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise DataError(
                str(path), "media file is a regular file (not a FIFO, device, socket or folder)", row=row
            )
        if info.st_size > max_bytes:
            raise DataError(
                str(path), f"media file is at most {max_bytes} bytes", row=row, detail=f"{info.st_size} bytes"
            )
        chunks, total = [], 0
        while total <= max_bytes:  # in chunks: read(n) would allocate n bytes up front
            chunk = handle.read(min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)
    if len(data) > max_bytes:
        raise DataError(str(path), f"media file is at most {max_bytes} bytes", row=row)
    return data
