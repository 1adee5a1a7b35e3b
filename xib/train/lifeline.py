"""Training processes die with the launcher that started them.

torchrun starts every worker in its own session, so killing the launcher's process group leaves
torchrun and its workers running (and logging into a dead MLflow run). Two guards, both Linux:
- a parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGKILL)`): the launcher sets it on its child
  (torchrun or the deepspeed runner) and every worker sets it on itself, so a child is killed the
  moment its parent dies;
- a watchdog thread in each worker that follows the launcher itself (its pid and start time, handed
  down in `XIB_LAUNCHER`), for the processes in between it does not control (the deepspeed
  launcher's `launch.py`): when the launcher is gone, the worker kills itself within ~1 s.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LAUNCHER_ENV = "XIB_LAUNCHER"  # "<pid>:<start time>" of the launcher process
PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def _prctl() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(expected_parent: int | None = None, prctl: Any = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; returns False where the
    platform has no such signal. If the parent is already gone (it died before the call and the
    process was reparented), exit at once."""
    if not sys.platform.startswith("linux"):
        return False
    if (prctl or _prctl())(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(128 + signal.SIGKILL)
    return True


def child_dies_with_me() -> Callable[[], object] | None:
    """A `preexec_fn` for Popen: the child gets SIGKILL when this process dies. Everything it needs
    is resolved here, in the parent: between fork and exec nothing may be imported."""
    if not sys.platform.startswith("linux"):
        return None
    return functools.partial(die_with_parent, os.getpid(), _prctl())


def identity(pid: int | None = None) -> str:
    """`<pid>:<start time>` of a process (this one by default): a pid reused later does not match."""
    import psutil

    process = psutil.Process(pid)
    return f"{process.pid}:{process.create_time():.3f}"


def alive(ident: str) -> bool:
    """Whether the process `identity()` named still runs (the same process, not a reused pid)."""
    import psutil

    pid, _, started = ident.partition(":")
    try:
        return f"{float(psutil.Process(int(pid)).create_time()):.3f}" == started
    except (psutil.NoSuchProcess, ValueError):
        return False


def watch_launcher(ident: str | None = None, poll_s: float = POLL_S) -> threading.Thread | None:
    """Start a daemon thread that SIGKILLs this process once the launcher `ident` (default: the
    `XIB_LAUNCHER` environment variable) has exited; None when there is no launcher to follow."""
    ident = ident if ident is not None else os.environ.get(LAUNCHER_ENV, "")
    if not ident or ident.partition(":")[0] == str(os.getpid()):
        return None

    def follow() -> None:
        while alive(ident):
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=follow, name="xib-launcher-watch", daemon=True)
    thread.start()
    return thread
