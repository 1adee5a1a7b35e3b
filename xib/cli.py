"""`xib <command> [hydra overrides...]`: one entry point per pipeline stage.

Each command is a small function in xib/commands.py taking the composed config. Heavy libraries
are imported inside those functions, so `xib --help` stays fast.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from xib.commands import load_commands

    COMMANDS = load_commands()

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print("usage: xib [--params params.yaml] <command> [key=value ...]\n\ncommands:")
        for name, func in sorted(COMMANDS.items()):
            doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
            print(f"  {name:<12} {doc}")
        return 0
    if args[0] == "--params" and len(args) > 2:
        # Stages under `dvc repro` read the composed config DVC tracks (params.yaml).
        import os

        os.environ["XIB_PARAMS_FILE"] = args[1]
        args = args[2:]
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"xib: unknown command {name!r}; try `xib --help`", file=sys.stderr)
        return 2
    try:
        result = COMMANDS[name](rest)
    except Exception as err:
        from xib.transient import exit_status

        return exit_status(name, err)  # one line; 75 when a retry may cure it, 1 otherwise
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
