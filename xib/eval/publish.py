"""Eval's outputs as one unit: checked before the work, staged beside the target, published by one rename.

`artifacts/eval/` (metrics.json, candidate.json, report.json, plots/) must never hold one evaluation's
plots beside another's metrics. So the folder is built whole under a staging name in the same
parent directory and swapped in with a single `renameat2(RENAME_EXCHANGE)` (an atomic exchange of
two directory entries; a plain rename when there is no old folder). A read-only or full disk is
found before the expensive evaluation, and a failure while staging leaves the old folder untouched
and no staging folder behind. Errors are one line (XibError).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from xib.errors import XibError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two existing paths (Linux renameat2); OSError when the system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 not available")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _why(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "not writable" + (" (read-only file system)" if err.errno == errno.EROFS else "")
    return err.strerror or type(err).__name__


def preflight(out: Path, min_free_mb: float) -> None:
    """Refuse, before any work, an output folder that cannot be written or lacks `min_free_mb` free."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
        probe.rmdir()
    except OSError as err:
        raise XibError(
            f"{parent}: evaluation output {_why(err)}; nothing evaluated, nothing written"
        ) from None
    free_mb = shutil.disk_usage(parent).free / 2**20
    if free_mb < float(min_free_mb):
        raise XibError(
            f"{parent}: {free_mb:.1f} MB free, eval.min_free_mb asks for {float(min_free_mb):g}; "
            "nothing evaluated, nothing written"
        )


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; on success it replaces `out` in one rename."""
    out = Path(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError as err:
        raise XibError(f"{out.parent}: evaluation output {_why(err)}; nothing written") from None
    try:
        try:
            yield staging
            if out.exists():
                _exchange(staging, out)  # staging now holds the old outputs, removed below
            else:
                os.rename(staging, out)
        except OSError as err:
            raise XibError(f"{out}: writing the evaluation failed, {_why(err)}; nothing written") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
