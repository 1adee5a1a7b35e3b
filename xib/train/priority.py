"""A training rank keeps the CPU priority its stage was started with.

torchrun starts every worker in its own session, and under the kernel's autogroup scheduling
(`/proc/sys/kernel/sched_autogroup_enabled`, on by default in many Linux kernels and VMs) a new
session is a new scheduling group: groups share the CPU equally, whatever niceness their processes
inherited. A worker started at niceness n gives its own group that niceness, so `infra.stage_nice`
lowers the share of the whole alignment, not only of the processes that launched it.
"""

from __future__ import annotations

import os
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def inherit_niceness(autogroup: Path = AUTOGROUP) -> int | None:
    """Give this process's autogroup the niceness the process runs at; returns it, or None when
    there is nothing to do (niceness 0, no autogroup) or the kernel refused."""
    niceness = os.nice(0)
    if niceness <= 0 or not autogroup.is_file():
        return None
    try:
        autogroup.write_text(f"{niceness}\n")
    except OSError:  # not permitted here: the group keeps the kernel's share
        return None
    return niceness
