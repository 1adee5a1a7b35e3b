"""Evaluation flow: single-modality benchmarks, DisCRn, baselines -> metrics.json and plots."""

from __future__ import annotations

from prefect import flow

from flows.common import project_root, stage_task


@flow(name="xib-evaluate", log_prints=True)
def evaluate_flow(overrides: list[str] | None = None, force: bool = False) -> str:
    overrides = list(overrides or [])
    return stage_task(overrides)("evaluate", overrides, project_root(overrides), force)
