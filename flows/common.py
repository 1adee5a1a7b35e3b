"""The one Prefect task every flow uses: run a dvc.yaml stage as a child `xib` process, skip it when unchanged.

A stage that fails transiently (its child exits 75: a service did not answer) is retried with the
backoff `infra.retry` sets; any other failure (bad data, a refused gate, a crashed training) fails
the flow at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger


def retry_on_transient_only(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's hook signature
    """Retry exactly the failures a retry may cure (`xib.transient.is_transient`)."""
    from xib.transient import is_transient

    try:
        state.result()
    except Exception as err:
        return is_transient(err)
    return False


@task(
    name="stage", task_run_name="{name}", retry_condition_fn=retry_on_transient_only
)  # named for the dashboard
def run_stage(name: str, overrides: list[str], root: str, force: bool = False) -> str:
    """Run one stage; returns the paths it wrote (joined by ';'), never tensors."""
    from xib.stages import load_stages
    from xib.stages import run_stage as run

    stage = load_stages()[name]
    outcome = run(stage, overrides, Path(root), force=force, in_process=False)
    get_run_logger().info("stage %s %s", name, outcome)
    return ";".join(str(Path(root) / out) for out in stage.outs)


def stage_task(overrides: list[str]) -> Any:
    """`run_stage` with the retry count and backoff of `infra.retry` in the composed config."""
    from xib.config import load_config

    retry = load_config(overrides).infra.retry
    return run_stage.with_options(
        retries=int(retry.stage_retries),
        retry_delay_seconds=[float(d) for d in retry.stage_retry_delays_s] or 0,
    )


def project_root(overrides: list[str]) -> str:
    from xib.config import load_config

    return str(Path(load_config(overrides).paths.root).resolve())
