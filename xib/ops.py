"""`xib dashboard`: the ops page (xib/dashboard.py), written and optionally served."""

from __future__ import annotations

import argparse

from xib.commands import command
from xib.config import load_config


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
    if opts.serve or bool(cfg.infra.dashboard.serve):
        serve(path, str(cfg.infra.dashboard.host), int(cfg.infra.dashboard.port))
    return 0
