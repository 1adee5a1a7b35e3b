"""`xib` commands of the registry room: `gate`, `promote`, `rollback`, `ask`."""

from __future__ import annotations

import argparse

from xib.commands import command
from xib.config import load_config
from xib.errors import XibError


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides (key=value) apart from the command's own arguments."""
    overrides = [a for a in args if ("=" in a and not a.startswith("-")) or a.startswith("~")]  # ~key: delete
    return [a for a in args if a not in overrides], overrides


@command("gate")
def gate_command(args: list[str]) -> int:
    """Register the evaluated candidate (challenger), judge it against the champion; exit 3 on refuse."""
    from xib.registry.registry import GATE_REFUSED, run_gate

    payload = run_gate(load_config(args))
    print(f"{payload['model']} version {payload['version']}: {payload['decision'].upper()}")
    for reason in payload["reasons"]:  # failing checks first
        print(f"  - {reason}")
    if payload["promoted"]:
        print(f"  champion is now version {payload['version']}")
    return 0 if payload["decision"] == "promote" else GATE_REFUSED


@command("promote")
def promote_command(args: list[str]) -> int:
    """Make the challenger (or --version N) champion; the old champion becomes `previous`."""
    from xib.registry.registry import promote_version

    own, overrides = _split(args)
    parser = argparse.ArgumentParser(prog="xib promote")
    parser.add_argument("--version", default=None)
    parser.add_argument("--force", action="store_true", help="promote even without a passing gate verdict")
    opts = parser.parse_args(own)
    new, old = promote_version(load_config(overrides), opts.version, opts.force)
    print(f"champion: version {new} (previous: {old or 'none'})")
    return 0


@command("rollback")
def rollback_command(args: list[str]) -> int:
    """Move `champion` back to the previous champion (--expected N: only if N is still champion)."""
    from xib.registry.registry import rollback

    own, overrides = _split(args)
    parser = argparse.ArgumentParser(prog="xib rollback")
    parser.add_argument("--expected", default=None, help="the champion you mean to roll back")
    opts = parser.parse_args(own)
    cfg = load_config(overrides)
    version = rollback(cfg) if opts.expected is None else rollback(cfg, expected_champion=opts.expected)
    print(f"champion: version {version}")
    return 0


@command("ask")
def ask_command(args: list[str]) -> int:
    """Answer a question over media files with a registered model: xib ask --input a.png "question"."""
    import mlflow

    from xib.registry.registry import client

    own, overrides = _split(args)
    parser = argparse.ArgumentParser(prog="xib ask")
    parser.add_argument(
        "--model", default="champion", help="alias (champion, challenger, previous) or version"
    )
    parser.add_argument("--input", action="append", default=[], help="a media file; repeat for several")
    parser.add_argument("question", nargs="+")
    opts = parser.parse_args(own)
    if not opts.input:
        raise XibError("give at least one --input media file")
    cfg = load_config(overrides)
    client(cfg)
    name = str(cfg.gate.model_name)
    uri = f"models:/{name}/{opts.model}" if opts.model.isdigit() else f"models:/{name}@{opts.model}"
    model = mlflow.pyfunc.load_model(uri)
    [answer] = model.predict([{"question": " ".join(opts.question), "media": list(opts.input)}])
    print(answer)
    return 0
