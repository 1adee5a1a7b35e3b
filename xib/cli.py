"""`xib [--params FILE] <command> [key=value ...]`: one entry point per pipeline stage.

Each room registers its commands with `@command("name")` (xib/commands.py) in its own
`xib/<room>/commands.py`; `config` is in xib/commands.py, and the commands over the whole pipeline
(`params`, `repro`, `demo`, `dashboard`) in xib/pipeline/commands.py. A command composes the config and calls one
library function; heavy libraries are imported inside those functions, so `xib --help` stays fast.

Exit status: 0 done, 1 an error the user can act on (`XibError`, one line), 2 a bad command line or
config (`ConfigError`: unknown command, key or group option, invalid value; one line). A bug in xib is
an ordinary exception and keeps its traceback.
"""

from __future__ import annotations

import difflib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xib.commands import Command

USAGE = "usage: xib [--params params.yaml] <command> [key=value ...]   (xib <command> --help)"


def main(argv: list[str] | None = None) -> int:
    from xib.commands import load_commands

    commands = load_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE + "\n\ncommands:")
        for name, func in sorted(commands.items()):
            doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
            print(f"  {name:<12} {doc}")
        return 0
    params_file = None
    if args[0] == "--params":
        if len(args) < 3:
            print(f"xib: --params needs a file and a command\n{USAGE}", file=sys.stderr)
            return 2
        params_file, args = args[1], args[2:]
    name, rest = args[0], args[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; try `xib --help`"
        print(f"xib: unknown command {name!r}{hint}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        print(f"usage: xib {name} [key=value ...]\n\n{(commands[name].__doc__ or '').strip()}")
        return 0
    return run(name, commands[name], rest, params_file)


def run(name: str, func: Command, rest: list[str], params_file: str | None) -> int:
    from contextlib import nullcontext

    from xib.config import ConfigError, composed_from

    try:
        with composed_from(params_file) if params_file else nullcontext():
            result = func(rest)
    except ConfigError as err:
        print(f"xib {name}: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from xib.transient import exit_status

        return exit_status(name, err)  # one line; 75 when a retry may cure it, 1 otherwise
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
