"""Stage times of a `make demo` run, read from its log (the Prefect flow's task lines).

    make demo > demo.log 2>&1
    python benchmarks/demo_stage_times.py demo.log [other.log ...]

Prints, per log, each stage's finish time after the pipeline flow began and the time since the
previous stage finished (the image, 3D and audio alignments run in parallel: their deltas share one
window), then the pipeline's wall time. Used for benchmarks/demo.md.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| INFO +\| (Task|Flow) run '([^']+)' - (.*)$")


def _clock(text: str) -> datetime:
    return datetime.strptime(text, "%H:%M:%S.%f")


def stage_times(log: str) -> tuple[list[tuple[str, float, float]], float]:
    """[(stage, seconds since the pipeline began, seconds since the previous finish)], pipeline seconds."""
    began: datetime | None = None
    previous: datetime | None = None
    rows: list[tuple[str, float, float]] = []
    total = 0.0
    for raw in log.splitlines():
        match = LINE.match(raw.strip())
        if not match:
            continue
        clock, kind, name, message = match.groups()
        moment = _clock(clock)
        if began is not None and moment < began:
            moment += timedelta(days=1)  # the run crossed midnight
        if kind == "Flow" and "for flow 'xib-pipeline'" in message and began is None:
            began = previous = moment
        elif began is not None and previous is not None and message.startswith("Finished in state"):
            total = (moment - began).total_seconds()
            if kind == "Task":
                rows.append((name, total, (moment - previous).total_seconds()))
                previous = moment
    if began is None:
        raise SystemExit("no `xib-pipeline` flow run in this log")
    return rows, total


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main(paths: list[str]) -> int:
    for path in paths:
        rows, total = stage_times(Path(path).read_text(errors="replace"))
        print(f"## {path}\n\n| stage | finished at | since the previous |\n|---|---:|---:|")
        for name, at, delta in rows:
            print(f"| {name} | {_mmss(at)} | {_mmss(delta)} |")
        print(f"| pipeline | {_mmss(total)} | |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
