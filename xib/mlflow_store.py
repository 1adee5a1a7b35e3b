"""One way to point MLflow at `infra.mlflow_tracking_uri`, safe when processes start together.

Several alignment processes start at once in the demo; each would create the tables of a fresh
sqlite store and all but one fail ("table ... already exists"). The first use of a sqlite store
therefore happens under an exclusive lock on a file beside the database.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any


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
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{database}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return mlflow
