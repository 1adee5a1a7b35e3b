"""The `xib` command registry. Each command takes Hydra overrides, composes the config, and calls
library code. Each room registers its own commands in `xib/<room>/commands.py` with `@command`;
commands stay thin: the work lives in xib/data, xib/models, xib/train, xib/eval, xib/registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from omegaconf import OmegaConf

from xib.config import load_config

Command = Callable[[list[str]], int | None]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


@command("config")
def show_config(overrides: list[str]) -> int:
    """Print the composed, resolved config."""
    print(OmegaConf.to_yaml(load_config(overrides), resolve=True))
    return 0


ROOMS = (
    "xib.data.commands",
    "xib.models.commands",
    "xib.train.commands",
    "xib.eval.commands",
    "xib.registry.commands",
    "xib.serve.commands",
    "xib.pipeline",
    "xib.ops",
)


def load_commands() -> dict[str, Command]:
    """Import every room's command module (cheap: they import heavy libraries lazily)."""
    for module in ROOMS:
        importlib.import_module(module)
    return COMMANDS
