"""Registered versions by reference (an alias or a number), and loading one for answering: what
`xib ask` and `xib serve` share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig


def resolve(cfg: XibConfig, ref: str) -> str:
    """The version `ref` (alias or number) names now, or an XibError saying what exists."""
    from xib.registry.registry import alias_version, client

    name = cfg.gate.model_name
    if ref.isdigit():
        from mlflow.exceptions import MlflowException

        try:
            client(cfg).get_model_version(name, ref)
        except MlflowException:
            raise XibError(
                f"model {name!r} has no version {ref} in {cfg.infra.mlflow_tracking_uri}"
            ) from None
        return ref
    version = alias_version(cfg, ref)
    if version is None:
        hint = " (run `xib gate`, then `xib promote`)" if ref == "champion" else ""
        raise XibError(f"model {name!r} has no {ref!r} in {cfg.infra.mlflow_tracking_uri}{hint}")
    return version


def load_pyfunc(cfg: XibConfig, version: str) -> Any:
    """One registered version as its MLflow pyfunc model."""
    import mlflow

    from xib.registry.registry import client

    client(cfg)  # points mlflow at the project's tracking URI
    return mlflow.pyfunc.load_model(f"models:/{cfg.gate.model_name}/{version}")


def load_version(cfg: XibConfig, version: str) -> Any:
    """The runtime runner of one registered version, loaded through its pyfunc (as `xib ask` loads it)."""
    return load_pyfunc(cfg, version).unwrap_python_model().served.runner


def registry_listing(cfg: XibConfig) -> tuple[list[str], dict[str, str]]:
    """The registered versions and the aliases (alias -> version) of `gate.model_name`."""
    from xib.registry.registry import client

    mc = client(cfg)
    name = cfg.gate.model_name
    versions = sorted((str(v.version) for v in mc.search_model_versions(f"name='{name}'")), key=int)
    model = mc.get_registered_model(name) if versions else None
    aliases = {str(k): str(v) for k, v in (getattr(model, "aliases", None) or {}).items()}
    return versions, aliases
