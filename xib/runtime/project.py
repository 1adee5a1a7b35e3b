"""Which project (and so which model registry) a command reading the registry uses.

`xib ask` and `xib serve` may run from any directory. The project is `XIB_ROOT` when set; else the
working directory or the nearest folder above it that holds the registry database; else the
checkout xib is installed from. A command never creates an empty registry by looking for one: when
none exists it says where it looked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _registry_file(cfg: XibConfig) -> Path | None:
    from xib.mlflow_store import sqlite_path

    path = sqlite_path(cfg.infra.mlflow_tracking_uri)
    return None if path is None else path.resolve()


def project_config(load: Callable[[list[str]], Any], overrides: list[str]) -> tuple[Any, str]:
    """The config of the project whose registry exists, and a line saying which registry that is.

    `load` composes the config (`xib.config.load_config`). Registries that are servers (not a
    sqlite file) are used as configured.
    """
    cfg = load(overrides)
    found = _registry_file(cfg)
    if found is None:
        return cfg, f"registry: {cfg.infra.mlflow_tracking_uri}"
    if found.is_file():
        return cfg, f"registry: {found}"
    explicit = os.environ.get("XIB_ROOT") or any(
        o.startswith(("paths.root=", "infra.mlflow_tracking_uri=")) for o in overrides
    )
    tried = [found]
    if not explicit:
        candidates = [*Path.cwd().resolve().parents, PACKAGE_ROOT]
        for root in candidates:
            other = load([f"paths.root={root}", *overrides])
            path = _registry_file(other)
            if path is not None and path.is_file():
                return other, f"registry: {path} (project {root})"
            if path is not None and path not in tried:
                tried.append(path)
    raise XibError(
        f"no model registry found (looked for {', '.join(str(p) for p in tried[:4])}"
        f"{' ...' if len(tried) > 4 else ''}); run `make demo` in the project, or set XIB_ROOT to it"
    )
