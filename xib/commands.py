"""The `xib` command registry. Each command takes Hydra overrides, composes the config, and calls
library code. Each room registers its own commands in `xib/<room>/commands.py` with `@command`;
commands stay thin: the work lives in xib/data, xib/models, xib/train, xib/eval, xib/registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xib.config import load_config, to_yaml

Command = Callable[[list[str]], int | None]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


@command("config")
def show_config(overrides: list[str]) -> int:
    """Print the composed, resolved, validated config (the values every command gets)."""
    print(to_yaml(load_config(overrides)), end="")
    return 0


ROOMS = (
    "xib.data.commands",
    "xib.models.commands",
    "xib.train.commands",
    "xib.eval.commands",
    "xib.registry.commands",
    "xib.pipeline.commands",
    "xib.serve.commands",
)


def load_commands() -> dict[str, Command]:
    """Import every room's command module (cheap: they import heavy libraries lazily)."""
    for module in ROOMS:
        importlib.import_module(module)
    return COMMANDS
