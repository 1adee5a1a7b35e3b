"""The one Prefect task every flow uses: run a dvc.yaml stage as a child `xib` process, skip it when unchanged."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

TRANSIENT = (ConnectionError, TimeoutError, OSError)


def retry_on_transient_only(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's hook signature
    """Retry storage and network failures; never a failed gate, bad data or a crashed training."""
    from xib.errors import XibError

    try:
        state.result()
    except XibError:
        return False
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


@task(
    name="stage",
    task_run_name="{name}",  # the dashboard's per-stage durations name the stage
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_only,
)
def run_stage(name: str, overrides: list[str], root: str, force: bool = False) -> str:
    """Run one stage; returns the paths it wrote (joined by ';'), never tensors."""
    from xib.stages import load_stages
    from xib.stages import run_stage as run

    stage = load_stages()[name]
    outcome = run(stage, overrides, Path(root), force=force, in_process=False)
    get_run_logger().info("stage %s %s", name, outcome)
    return ";".join(str(Path(root) / out) for out in stage.outs)


def project_root(overrides: list[str]) -> str:
    from xib.config import load_config

    return str(Path(load_config(overrides).paths.root).resolve())
