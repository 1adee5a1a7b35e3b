"""One way to point MLflow at `infra.mlflow_tracking_uri`, safe when processes start together.

Several alignment processes start at once in the demo; each would create the tables of a fresh
sqlite store and all but one fail ("table ... already exists"). The first use of a sqlite store
therefore happens under an exclusive lock on a file beside the database.
"""

from __future__ import annotations

import os
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


def credentials_to_env(uri: str) -> str:
    """`uri` without user info; a user and password found in it go to the environment instead.

    MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD for an http(s) server, psycopg2 reads
    PGUSER/PGPASSWORD for a PostgreSQL store. Child processes (stages, DeepSpeed workers) inherit
    them, so no config, param, tag or log line needs to carry the password.
    """
    from xib.scrub import credentials_from_url

    bare, user, password = credentials_from_url(uri)
    if not user and not password:
        return uri
    if uri.startswith(("http://", "https://")):
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    elif uri.startswith(("postgresql", "postgres")) and password:
        os.environ["PGUSER"], os.environ["PGPASSWORD"] = user, password
    else:
        return uri  # a store that takes credentials only in its URI
    return bare


def use_tracking_uri(uri: str) -> Any:
    """`mlflow` with its tracking and registry URIs set to `uri`, the store's tables created.

    Returns the module; the URI it set (credentials moved to the environment) is `mlflow.get_tracking_uri()`.
    """
    import mlflow

    uri = credentials_to_env(uri)
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
    mlflow = use_tracking_uri(uri)
    uri = mlflow.get_tracking_uri()  # credentials moved to the environment by `use_tracking_uri`
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
