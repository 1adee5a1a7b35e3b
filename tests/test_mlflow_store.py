"""Processes that start together on a fresh sqlite MLflow store all get a working store."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from xib.mlflow_store import sqlite_path


def _open_and_log(uri: str, name: str) -> None:
    from xib.mlflow_store import use_tracking_uri

    mlflow = use_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("race")
    if experiment is None:
        try:
            client.create_experiment("race")
        except mlflow.exceptions.MlflowException:
            pass  # another process created it first
    experiment = client.get_experiment_by_name("race")
    run = client.create_run(experiment.experiment_id, run_name=name)
    client.set_terminated(run.info.run_id)


def test_concurrent_first_use_of_a_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_and_log, args=(uri, f"p{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    from xib.mlflow_store import use_tracking_uri

    runs = use_tracking_uri(uri).search_runs(experiment_names=["race"])
    assert sorted(runs["tags.mlflow.runName"]) == ["p0", "p1", "p2", "p3"]


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:///./mlflow.db") == Path("./mlflow.db")
    assert sqlite_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("sqlite:///:memory:") is None
