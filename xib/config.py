"""The root typed config: Hydra composes conf/, then the code gets an `XibConfig` dataclass object.

`load_config` is the one way to load a config: Hydra composes a primary config (conf/config.yaml, or a
file that is already composed: params.yaml under `dvc repro`, a training run's run_config.yaml) with
the overrides, OmegaConf checks every key and type against `XibConfig`, `OmegaConf.to_object` turns it
into dataclasses (interpolations resolved), and `xib.config_rules.check` validates ranges, choices and
cross-field rules once. Anything wrong is a `ConfigError`: one line, exit status 2.

Each room owns its section's dataclass (xib/<room>/config.py); this module only composes them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xib.config_rules import ConfigError, check, select
from xib.data.config import DataConfig
from xib.eval.config import EvalConfig
from xib.modalities import MODALITIES
from xib.models.bootstrap_config import BootstrapConfig
from xib.models.config import ModelConfig
from xib.registry.config import GateConfig
from xib.serve.config import ServeConfig
from xib.train.config import TrainConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
__all__ = [
    "MODALITIES",
    "CONF_DIR",
    "ConfigError",
    "XibConfig",
    "load_config",
    "select",
    "to_dict",
    "to_yaml",
]


@dataclass
class PathsConfig:
    root: str = "."
    data: str = "${paths.root}/data"
    artifacts: str = "${paths.root}/artifacts"


@dataclass
class DashboardConfig:
    """`xib dashboard` (xib/dashboard.py): where the page goes, how it is served, what it reads."""

    output: str = "${paths.artifacts}/dashboard/index.html"
    serve: bool = False  # serve the page after writing it (same as `xib dashboard --serve`)
    host: str = "127.0.0.1"
    port: int = 8050
    flow_runs: int = 30  # most recent Prefect flow runs shown
    api_timeout_s: float = 5.0  # Prefect API requests; past it the page says the server did not answer
    mlflow_ui: str = ""  # MLflow UI base URL for links ("" = the tracking URI when it is http)


@dataclass
class RetryConfig:
    """Retry budgets for services (xib/transient.py, docs/OPERATIONS.md): flows retry a stage only when
    it failed transiently (exit status 75); each tracking/storage call is bounded on its own."""

    stage_retries: int = 2  # extra attempts of a stage that failed transiently
    stage_retry_delays_s: list[float] = field(default_factory=lambda: [10.0, 60.0])  # backoff per retry
    tracking_max_retries: int = 2  # MLFLOW_HTTP_REQUEST_MAX_RETRIES
    tracking_timeout_s: float = 20.0  # MLFLOW_HTTP_REQUEST_TIMEOUT
    tracking_backoff_factor: int = 1  # MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (an integer for MLflow)
    storage_max_attempts: int = 3  # AWS_MAX_ATTEMPTS (S3 and DVC's S3 remote)
    storage_connect_timeout_s: float = 5.0  # S3 connection set-up, xib's clients and DVC's S3 remote
    storage_read_timeout_s: float = 30.0  # S3 socket reads, xib's clients and DVC's S3 remote


@dataclass
class InfraConfig:
    mlflow_tracking_uri: str = "sqlite:///${paths.root}/mlflow.db"
    mlflow_artifact_root: str = "${paths.root}/mlruns"
    mlflow_experiment: str = "xib"
    prefect_api_url: str = ""  # empty: Prefect's temporary local API
    dvc_remote: str = "local"
    dvc_remote_url: str = "${paths.root}/.cache/dvc-remote"
    s3_endpoint_url: str = ""  # e.g. http://127.0.0.1:5000 for moto or MinIO
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    # CPU niceness (0-19) of a flow's child stage, by dvc.yaml stage name; unnamed stages run at 0
    stage_nice: dict[str, int] = field(default_factory=dict)


@dataclass
class ModalityConfig:
    name: str = "image"
    init_from: str = ""  # another modality whose trained projection initialises this one (video <- image)


@dataclass
class XibConfig:
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    modality: ModalityConfig = field(default_factory=ModalityConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    infra: InfraConfig = field(default_factory=InfraConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


_COMPOSE_LOCK = threading.Lock()  # Hydra's global state is not thread-safe (flows run stages in threads)
# `xib --params params.yaml <command>` composes that file for the one command it runs (a context
# variable, not the environment: child processes and other threads compose conf/ as usual).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("xib_config_file", default=None)


@contextmanager
def composed_from(config_file: str | Path) -> Iterator[None]:
    """Within the block, `load_config` composes `config_file` (params.yaml) instead of conf/."""
    token = _CONFIG_FILE.set(Path(config_file))
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


def for_modality(node: Any, name: str, modality: str) -> Any:
    """`node.<name>_by_modality[modality]` where that table names the modality, else `node.<name>`."""
    table = getattr(node, f"{name}_by_modality", None) or {}
    return table[modality] if modality in table else getattr(node, name)


def conf_dir() -> Path:
    """The Hydra tree: conf/ of this checkout, or `XIB_CONF_DIR` (a project's own tree)."""
    return Path(os.environ.get("XIB_CONF_DIR", CONF_DIR))


def compose(overrides: list[str] | None = None, config_file: str | Path | None = None) -> Any:
    """Hydra's composition (a DictConfig, interpolations unresolved, no schema defaults).

    The primary config is conf/config.yaml, or `config_file`: a config composed before (params.yaml,
    run_config.yaml), on which overrides of values still apply (group choices need conf/).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    config_file = config_file if config_file is not None else _CONFIG_FILE.get()
    if config_file is None:
        directory, name = conf_dir(), "config"
    else:
        path = Path(config_file).resolve()
        if not path.is_file() or path.suffix != ".yaml":
            raise ConfigError(f"{config_file}: no such config file (a composed .yaml, e.g. params.yaml)")
        directory, name = path.parent, path.stem
    check_overrides(overrides, directory)
    try:
        with _COMPOSE_LOCK, initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            return hydra_compose(config_name=name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None


def load_config(overrides: list[str] | None = None, config_file: str | Path | None = None) -> XibConfig:
    """Compose (see `compose`), check against the schema, and return the validated `XibConfig`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    composed = compose(overrides, config_file)
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(XibConfig), composed))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    if not isinstance(cfg, XibConfig):
        raise TypeError(f"OmegaConf.to_object gave {type(cfg).__name__}, not XibConfig")
    check(cfg)
    return cfg


def one_line(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line that names the key."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    full_key = getattr(err, "full_key", None)
    head = lines[0] if lines else type(err).__name__
    if full_key and full_key not in head:
        head = f"{full_key}: {head}"
    override = getattr(err, "override", None)  # Hydra's OverrideParseException: which override
    if isinstance(override, str) and override not in head:
        head = f"{override!r}: {head}"
    append = next((line for line in lines if line.startswith("To append to your config use")), None)
    if append:  # a key the composed config lacks (a new entry in a table): Hydra's own fix
        head += " It is not in the config; to add it, use" + append.removeprefix(
            "To append to your config use"
        )
    return head


def check_overrides(overrides: list[str], directory: Path) -> None:
    """Fail early, in one line, on an unknown group option or key (with the closest match)."""
    for override in overrides:
        key, eq, value = override.partition("=")
        if not eq:
            if override.startswith("~"):
                continue
            raise ConfigError(f"{override!r} is not an override; write key=value (e.g. train.steps=10)")
        if key.startswith(("+", "~", "hydra.")):
            continue  # Hydra's own syntax: appending or deleting is the user's explicit choice
        group = conf_dir() / key
        if "." not in key and "/" not in key and group.is_dir():
            if directory != conf_dir():
                raise ConfigError(
                    f"{override!r}: a composed config file takes values ({key}.name=...), not a group choice"
                )
            choices = sorted(p.stem for p in group.glob("*.yaml"))
            if value not in choices:
                raise ConfigError(f"unknown {key} option {value!r}; choices: {', '.join(choices)}")
            continue
        problem = unknown_key(key)
        if problem:
            raise ConfigError(problem)


def unknown_key(key: str) -> str | None:
    """Why `key` (a.b.c) names no field of `XibConfig`, or None when it does (or lies in a free table)."""
    node: Any = XibConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return None  # inside a table (dict) or a value: its keys are free
        hints = typing.get_type_hints(node)
        if part not in hints:
            where = ".".join(parts[:i])
            close = difflib.get_close_matches(part, list(hints), n=1)
            message = f"unknown config key {key!r}" + (f" ({where} has no {part!r})" if where else "")
            if close:
                message += f"; did you mean {'.'.join([*parts[:i], close[0], *parts[i + 1 :]])!r}?"
            return message
        node = hints[part]
        if typing.get_origin(node) is dict:
            return None
    return None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config (dataclass object, or any of its sections) as plain dicts and lists, for saving."""
    # Any: every section's dataclass and free tables (dicts) alike; anything else is a TypeError below.
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, dict):
        return {str(k): to_plain(v) for k, v in cfg.items()}
    raise TypeError(f"not a config section: {type(cfg).__name__}")


def to_plain(value: Any) -> Any:
    """A config value as plain Python: dataclasses and mappings as dicts, sequences as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def to_yaml(cfg: Any) -> str:
    """The config (or a section) as YAML text: `xib config`, run_config.yaml, a registered model's config."""
    # Any: as `to_dict`, whose sections and tables it takes.
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def to_flat_dict(cfg: XibConfig) -> dict[str, Any]:
    """The resolved config as {"a.b.c": value}, for MLflow params and DVC params."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(to_dict(cfg), "")
    return flat
