"""Data flow: world (or ingest), validate, then instruction data and DisCRn in parallel."""

from __future__ import annotations

from prefect import flow

from flows.common import project_root, stage_task


@flow(name="xib-data", log_prints=True)
def data_flow(overrides: list[str] | None = None, force: bool = False) -> dict[str, str]:
    overrides = list(overrides or [])
    root = project_root(overrides)
    run_stage = stage_task(overrides)
    world = run_stage("world", overrides, root, force)
    validated = run_stage("validate", overrides, root, force, wait_for=[world])
    instruct = run_stage.submit("instruct", overrides, root, force, wait_for=[validated])
    discrn = run_stage.submit("discrn", overrides, root, force, wait_for=[validated])
    return {"world": world, "instruct": instruct.result(), "discrn": discrn.result()}
