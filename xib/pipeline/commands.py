"""The commands over the whole pipeline: `xib params`, `xib repro`, `xib demo` and `xib dashboard`.

The per-stage commands live in their rooms (xib/<room>/commands.py); these drive or report on every
stage at once. `xib demo` runs the Prefect flows (flows/pipeline.py) as a child process: the library
never imports the flows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from xib.commands import command
from xib.config import XibConfig, load_config
from xib.errors import XibError
from xib.pipeline.params import PARAMS_FILE, compose_params


@command("params")
def write_params(overrides: list[str]) -> int:
    """Write params.yaml (what DVC tracks) from conf/ plus overrides."""
    from xib.io import write_bytes

    write_bytes(PARAMS_FILE, compose_params(overrides).encode())
    print(f"wrote {PARAMS_FILE}")
    return 0


@command("repro")
def repro(overrides: list[str]) -> int:
    """Run every stage of dvc.yaml in order, in-process, skipping unchanged ones (no Prefect)."""
    from xib.stages import load_stages, run_stage

    root = Path(load_config(overrides).paths.root).resolve()
    for stage in load_stages().values():
        started = time.perf_counter()
        outcome = run_stage(stage, overrides, root)
        print(f"{stage.name:<14} {outcome:<8} {time.perf_counter() - started:7.1f} s")
    return 0


@command("demo")
def demo(overrides: list[str]) -> int:
    """The whole pipeline through Prefect on the embedded default, then a summary."""
    cfg = load_config(overrides)
    root = Path(cfg.paths.root).resolve()
    # Prefect reads its settings when imported, and its temporary API fails without this folder.
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(root / ".cache" / "prefect")))
    prefect_home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    status = subprocess.run([sys.executable, "-m", "flows.pipeline", *overrides]).returncode
    if status:
        raise XibError(f"the pipeline flow failed (exit status {status}); its log is above")
    decision_file = root / "artifacts/gate/decision.json"
    decision = json.loads(decision_file.read_text()) if decision_file.exists() else {}
    print_summary(root, decision, time.perf_counter() - started, cfg)
    from xib.registry.outcome import settle

    print("\n".join(settle(cfg, decision)))  # a champion to serve, or the one command to run next
    return 0


def print_summary(root: Path, decision: dict[str, Any], elapsed: float, cfg: XibConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from xib.scrub import scrub_text

    console = Console()
    metrics_file = root / "artifacts/eval/metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    table = Table(title=f"xib demo — {elapsed / 60:.1f} min")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(metrics):
        value = metrics[name]
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"[bold]gate:[/bold] {decision.get('decision', '?')}")
    for reason in decision.get("reasons", []):
        console.print(f"  - {reason}")
    console.print(
        "where to look: "
        f"`mlflow ui --backend-store-uri {scrub_text(cfg.infra.mlflow_tracking_uri)}`, "
        "`prefect server start`, `xib dashboard`"
    )


@command("dashboard")
def dashboard_command(args: list[str]) -> int:
    """Write the ops dashboard (registry, pipeline runs, data versions); --serve serves it on loopback."""
    from xib.dashboard import serve, write_dashboard

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(prog="xib dashboard")
    parser.add_argument("--serve", action="store_true", help="serve the page on infra.dashboard.host:port")
    opts = parser.parse_args([a for a in args if a not in overrides])
    cfg = load_config(overrides)
    path = write_dashboard(cfg)
    print(f"wrote {path}")
    if opts.serve or cfg.infra.dashboard.serve:
        serve(path, cfg.infra.dashboard.host, cfg.infra.dashboard.port)
    return 0
