"""The root typed config. Hydra composes conf/; this schema checks every key and type.

Each room owns its section's dataclass (xib/<room>/config.py); this module only composes them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xib.data.config import DataConfig
from xib.eval.config import EvalConfig
from xib.models.bootstrap_config import BootstrapConfig
from xib.models.config import ModelConfig
from xib.registry.config import GateConfig
from xib.train.config import TrainConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


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
class InfraConfig:
    mlflow_tracking_uri: str = "sqlite:///${paths.root}/mlflow.db"
    mlflow_artifact_root: str = "${paths.root}/mlruns"
    mlflow_experiment: str = "xib"
    prefect_api_url: str = ""  # empty: Prefect's temporary local API
    dvc_remote: str = "local"
    dvc_remote_url: str = "${paths.root}/.cache/dvc-remote"
    s3_endpoint_url: str = ""  # e.g. http://127.0.0.1:5000 for moto or MinIO
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)


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


MODALITIES = ("image", "pc", "audio", "video")
_COMPOSE_LOCK = threading.Lock()  # Hydra's global state is not thread-safe (flows run stages in threads)


def for_modality(node: Any, name: str, modality: str) -> Any:
    """`node.<name>_by_modality[modality]` where that table names the modality, else `node.<name>`."""
    table = getattr(node, f"{name}_by_modality", None) or {}
    return table[modality] if modality in table else getattr(node, name)


def load_config(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/ with Hydra, apply overrides (`data.world.items_per_modality=200`), check types.

    Under `dvc repro` the stages read the composed config DVC tracks instead: `XIB_PARAMS_FILE`
    (set by `xib --params params.yaml ...`) names it, and overrides still apply on top.
    """
    schema = OmegaConf.structured(XibConfig)
    params_file = os.environ.get("XIB_PARAMS_FILE")
    if params_file:
        composed = OmegaConf.load(params_file)
        conf_dir = Path(os.environ.get("XIB_CONF_DIR", CONF_DIR))
        for override in overrides or []:
            key, _, value = override.partition("=")
            group = conf_dir / key
            if (
                "." not in key and group.is_dir()
            ):  # a config group choice (`modality=audio`), as Hydra reads it
                composed = OmegaConf.merge(composed, {key: OmegaConf.load(group / f"{value}.yaml")})
            else:
                composed = OmegaConf.merge(composed, OmegaConf.from_dotlist([override]))
    else:
        from hydra import compose, initialize_config_dir

        conf_dir = Path(os.environ.get("XIB_CONF_DIR", CONF_DIR))
        with _COMPOSE_LOCK, initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            composed = compose(config_name=config_name, overrides=list(overrides or []))
    cfg = OmegaConf.merge(schema, composed)
    OmegaConf.set_struct(cfg, True)
    return cfg  # type: ignore[return-value]


def to_flat_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as {"a.b.c": value}, for MLflow params and DVC params."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
