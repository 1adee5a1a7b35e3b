"""One training, one MLflow run: a resumed training logs into the run it started in.

The launcher keeps the run id beside the checkpoints (`artifacts/align/<m>/ds/mlflow_run.json`) and
every checkpoint's completion marker names the run that wrote it. At the next start, when the
checkpoint the workers will resume from was written by the recorded run, that run is continued
(set RUNNING again, same params, one metric history); otherwise a new run is opened. Runs of the
modality left RUNNING by a launcher of this host that no longer exists (a crash, a SIGKILL) are
marked KILLED. Runs started on other hosts are left alone: from here it cannot be told whether
their launcher still runs.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

RECORD = "mlflow_run.json"
HOST_TAG = "xib.launcher.host"
PROCESS_TAG = "xib.launcher.process"  # lifeline.identity(): "<pid>:<start time>"
CONTINUABLE = ("RUNNING", "FAILED", "KILLED")


def launcher_tags() -> dict[str, str]:
    from xib.train.lifeline import identity

    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: identity()}


def read_record(ckpt_dir: Path) -> str:
    """The run id recorded beside the checkpoints ("" when there is none or it is unreadable)."""
    path = Path(ckpt_dir) / RECORD
    try:
        return str(json.loads(path.read_text()).get("run_id", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def write_record(ckpt_dir: Path, run_id: str) -> None:
    from xib.io import write_json

    write_json(Path(ckpt_dir) / RECORD, {"run_id": run_id})


def continuable_run(client: Any, ckpt_dir: Path, resume_tag: str | None) -> str:
    """The recorded run, if the checkpoint the workers will resume from (`resume_tag`) was written
    by that run and the run is not finished; else ""."""
    from mlflow.exceptions import MlflowException

    from xib.train import checkpointing

    run_id = read_record(ckpt_dir)
    if not run_id or resume_tag is None:
        return ""
    if checkpointing.marker(Path(ckpt_dir) / resume_tag).get("mlflow_run_id") != run_id:
        return ""
    try:
        run = client.get_run(run_id)
    except MlflowException:  # another tracking store, or the run was deleted
        return ""
    tags = run.data.tags
    if run.info.status == "RUNNING" and tags.get(HOST_TAG) == socket.gethostname():
        from xib.train.lifeline import alive

        if alive(tags.get(PROCESS_TAG, "")):
            raise XibError(
                f"{ckpt_dir}: MLflow run {run_id} is training this modality now "
                f"(launcher {tags[PROCESS_TAG].partition(':')[0]} on this host); wait for it or stop it"
            )
    return run_id if run.info.status in CONTINUABLE else ""


def mark_crashed(client: Any, experiment_id: str, modality: str, keep: str = "") -> list[str]:
    """Mark KILLED this modality's RUNNING alignment runs whose launcher, on this host, is gone."""
    from xib.train.lifeline import alive

    query = (
        f"tags.`xib.stage` = 'align' and tags.`xib.modality` = '{modality}' and attributes.status = 'RUNNING'"
    )
    killed = []
    for run in client.search_runs([experiment_id], filter_string=query, max_results=1000):
        tags = run.data.tags
        if run.info.run_id == keep or tags.get(HOST_TAG) != socket.gethostname():
            continue
        if PROCESS_TAG in tags and not alive(tags[PROCESS_TAG]):
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    return killed


def open_or_continue(
    cfg: XibConfig, modality: str, tags: dict[str, str], ckpt_dir: Path, resume_tag: str | None
) -> tuple[str, bool]:
    """The run this launch logs into, and whether it continues an earlier one (the one that wrote
    `resume_tag`, the checkpoint the workers will resume from)."""
    from xib.mlflow_store import use_tracking_uri
    from xib.train import tracking

    client = use_tracking_uri(cfg.infra.mlflow_tracking_uri).MlflowClient()
    run_id = continuable_run(client, ckpt_dir, resume_tag)
    continued = bool(run_id)
    if continued:
        client.update_run(run_id, status="RUNNING")
        for key, value in launcher_tags().items():
            client.set_tag(run_id, key, value)
    else:
        run_id = tracking.open_run(cfg, modality, {**tags, **launcher_tags()})
        write_record(ckpt_dir, run_id)
    experiment_id = client.get_run(run_id).info.experiment_id
    for crashed in mark_crashed(client, experiment_id, modality, keep=run_id):
        log.warning(
            "MLflow run %s was left RUNNING by a launcher that no longer runs: marked KILLED", crashed
        )
    return run_id, continued
