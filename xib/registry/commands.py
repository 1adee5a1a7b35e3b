"""`xib` commands of the registry room: `gate`, `promote`, `rollback`, `ask`."""

from __future__ import annotations

import argparse

from xib.commands import command
from xib.config import load_config
from xib.registry.asking import ask_inputs, ask_server, split_overrides, strip_answer_cue


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides (key=value) apart from the command's own arguments."""
    return split_overrides(args)


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
    import sys
    import time

    own, overrides = split_overrides(args)
    parser = argparse.ArgumentParser(prog="xib ask", description=ask_command.__doc__)
    parser.add_argument(
        "--model", default="champion", help="alias (champion, challenger, previous) or version"
    )
    parser.add_argument("--input", action="append", default=[], help="a media file; repeat for two")
    parser.add_argument("--server", default="", help="ask a running `xib serve` at this URL instead")
    parser.add_argument("--timing", action="store_true", help="print load and answer seconds to stderr")
    parser.add_argument("question", nargs="+")
    opts = parser.parse_args(own)
    question = " ".join(opts.question).strip()
    media = ask_inputs(opts.input, question)  # every check before anything loads
    if opts.server:
        start = time.perf_counter()
        answer = ask_server(opts.server, media, question)
        if opts.timing:
            print(f"answered by {opts.server} in {time.perf_counter() - start:.2f} s", file=sys.stderr)
        print(strip_answer_cue(answer))
        return 0

    from xib.registry.versions import load_pyfunc, resolve
    from xib.runtime.project import project_config

    cfg, where = project_config(load_config, overrides)
    version = resolve(cfg, opts.model)
    print(f"{cfg.gate.model_name} version {version} ({opts.model}), {where}", file=sys.stderr)
    start = time.perf_counter()
    model = load_pyfunc(cfg, version)
    loaded = time.perf_counter()
    [answer] = model.predict([{"question": question, "media": [str(path) for _, path in media]}])
    if opts.timing:
        print(
            f"loaded in {loaded - start:.2f} s, answered in {time.perf_counter() - loaded:.2f} s",
            file=sys.stderr,
        )
    print(strip_answer_cue(answer))
    return 0
