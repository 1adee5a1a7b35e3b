"""One way to point MLflow at `infra.mlflow_tracking_uri`, safe when processes start together.

Several alignment processes start at once in the demo; each would create the tables of a fresh
sqlite store and all but one fail ("table ... already exists"). The first use of a sqlite store
therefore happens under an exclusive lock on a file beside the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xib.io import file_lock

_READY: set[str] = set()  # URIs whose store this process has already opened
INIT_TIMEOUT_S = 300.0


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for servers and in-memory stores)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix) :])


def use_tracking_uri(uri: str) -> Any:
    """`mlflow` with its tracking and registry URIs set to `uri`, the store's tables created."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    database = sqlite_path(uri)
    if database is not None and uri not in _READY:
        with file_lock(
            f"{database}.lock", INIT_TIMEOUT_S, busy="another process is creating the MLflow store"
        ):
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        _READY.add(uri)
    return mlflow


def tracking_client(uri: str) -> Any:
    """An MlflowClient whose tracking and registry URIs are both `uri` (eval and the registry share it)."""
    return use_tracking_uri(uri).MlflowClient(tracking_uri=uri, registry_uri=uri)
