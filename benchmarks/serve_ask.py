"""`xib ask` answer time: loading the model per question against asking a running `xib serve`.

    nice .venv/bin/python benchmarks/serve_ask.py [--questions 5]

Builds the same project as serve_load.py (demo LLM shape), then times, as a user would see them:
- `xib ask --timing` (a new process: imports, registry, model load, one answer), `--questions` times;
- `xib ask --server URL --timing` against one `xib serve` that loaded the model once.
Prints a Markdown table of the median seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_load import build_project, serve


def timed_ask(args: list[str], root: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "xib.cli", "ask", "--timing", *args], capture_output=True, text=True, cwd=root,
        env=dict(os.environ), timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - start, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xib-ask-bench-") as tmp:
        root = Path(tmp)
        overrides = build_project(root)
        question = ["--input", str(root / "image.png"), "what is this ?"]
        local, loads, answers = [], [], []
        for _ in range(args.questions):
            wall, err = timed_ask([*question, *overrides], root)
            line = next(ln for ln in err.splitlines() if ln.startswith("loaded in"))
            loads.append(float(line.split()[2]))
            answers.append(float(line.split()[-2]))
            local.append(wall)
        proc, url = serve(root, overrides, 8, 1)
        try:
            remote = [timed_ask(["--server", url, *question], root)[0] for _ in range(args.questions)]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    med = statistics.median
    print(f"\n{os.cpu_count()} cores (shared), median of {args.questions} questions\n")
    print(
        "| how | wall seconds per question (process start to answer) | of which model load | of which answering |"
    )
    print("|---|---:|---:|---:|")
    print(
        f"| `xib ask` (loads the model each time) | {med(local):.2f} | {med(loads):.2f} | {med(answers):.2f} |"
    )
    print(f"| `xib ask --server` (model loaded once by `xib serve`) | {med(remote):.2f} | 0 | - |")


if __name__ == "__main__":
    main()
