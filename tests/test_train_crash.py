"""Crash hygiene with real processes: SIGKILL of the launcher (`xib align`, torchrun, 2 workers)
leaves no training process behind, the next start continues the same MLflow run from the last
checkpoint, and no run is left RUNNING; runs of dead launchers are marked KILLED."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_train_fixtures import make_world

# the kill comes when the test reads the first checkpoint line: far from the end even when the
# test's reading lags the workers by many steps (a loaded machine)
STEPS, EVERY, LOG_EVERY = 60, 6, 3
GONE_WITHIN_S = (
    30  # SIGKILL by the kernel (parent-death signal) is immediate; 30 s only bounds a slow machine
)


def _runs(cfg):
    import mlflow

    mlflow.set_tracking_uri(cfg.infra.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.infra.mlflow_experiment)
    return client, client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_killed_launcher_leaves_nothing_and_resumes_into_the_same_run(
    xib_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xib.config import load_config
    from xib.train.launch import run_alignment

    overrides = make_world(xib_root) + [
        f"train.steps={STEPS}",
        f"train.checkpoint_every={EVERY}",
        "train.eval_every=0",
        f"train.log_every={LOG_EVERY}",
        "train.launcher=torchrun",
    ]
    launcher = subprocess.Popen(
        [str(Path(sys.executable).with_name("xib")), "align", *overrides],
        env=dict(os.environ, XIB_ROOT=str(xib_root)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    family: list[psutil.Process] = []
    assert launcher.stdout is not None
    for line in launcher.stdout:
        seen.append(line)
        if line.startswith(f"checkpoint: step={EVERY},"):
            family = psutil.Process(launcher.pid).children(recursive=True)  # torchrun and its workers
            launcher.send_signal(signal.SIGKILL)  # the launcher alone, not its children
            break
    launcher.wait()
    assert len(family) >= 3, "".join(seen[-30:])
    _, alive = psutil.wait_procs(family, timeout=GONE_WITHIN_S)
    assert not alive, f"still running {GONE_WITHIN_S} s after the launcher died: {alive}"
    cfg = load_config(overrides)
    client, runs = _runs(cfg)
    assert [r.info.status for r in runs] == ["RUNNING"]  # what the crash left
    first = runs[0].info.run_id
    # Orphaned workers would train on and log into the dead run: once the family is gone the run's
    # history and checkpoints stay as they are, an unbroken prefix of the training.
    align = xib_root / "artifacts/align/image"

    def left_behind() -> tuple[list[int], list[str]]:
        steps = [m.step for m in client.get_metric_history(first, "train/loss")]
        return steps, sorted(p.name for p in (align / "ds").glob("step*"))

    logged, tags = left_behind()
    time.sleep(3)
    assert left_behind() == (logged, tags)
    assert logged == list(range(LOG_EVERY, logged[-1] + 1, LOG_EVERY)) and logged[-1] < STEPS
    assert f"step{EVERY:08d}" in tags  # the checkpoint whose line the test read, maybe later ones

    capsys.readouterr()
    assert run_alignment(cfg, "image", quiet=False) == 0
    out = capsys.readouterr().out
    resumed = re.search(r"resumed: tag=(step\d+)", out)
    assert f"continuing MLflow run {first}" in out and resumed and resumed.group(1) in tags
    resumed_from = resumed.group(1)
    client, runs = _runs(cfg)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(first, "FINISHED")]  # one training, one run
    steps = [m.step for m in client.get_metric_history(first, "train/loss")]
    # one history: every step once, except those the crashed run logged past its last checkpoint,
    # which the resumed run trained and logged again
    assert sorted(set(steps)) == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert all(step > int(resumed_from[4:]) for step in steps if steps.count(step) > 1)
    import json

    info = json.loads((xib_root / "artifacts/align/image/projection.json").read_text())
    assert info["provenance"]["mlflow_run_id"] == first


def test_runs_of_dead_launchers_are_marked_killed(xib_root: Path) -> None:
    from xib.config import load_config
    from xib.train import lifeline, run_record, tracking

    cfg = load_config(
        [
            f"infra.mlflow_tracking_uri=sqlite:///{xib_root}/mlflow.db",
            f"infra.mlflow_artifact_root={xib_root}/mlruns",
        ]
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = lifeline.identity(gone.pid)  # noted while it runs, then it exits
    gone.wait()
    assert lifeline.alive(lifeline.identity()) and not lifeline.alive(dead)
    crashed = tracking.open_run(cfg, "image", {**run_record.launcher_tags(), run_record.PROCESS_TAG: dead})
    running = tracking.open_run(cfg, "image", run_record.launcher_tags())  # this process: still alive
    other_host = tracking.open_run(
        cfg, "image", {run_record.HOST_TAG: "another-host", run_record.PROCESS_TAG: dead}
    )
    client, runs = _runs(cfg)
    assert run_record.mark_crashed(client, runs[0].info.experiment_id, "image") == [crashed]
    status = {r.info.run_id: r.info.status for r in _runs(cfg)[1]}
    assert status == {crashed: "KILLED", running: "RUNNING", other_host: "RUNNING"}
    # the record beside the checkpoints names a run: continued when its launcher is gone, refused
    # while its launcher still trains (two launches would write the same checkpoints)
    import json

    from xib.errors import XibError

    ckpt = xib_root / "ds"
    tag = ckpt / "step00000001"
    tag.mkdir(parents=True)
    for run_id in (crashed, running):
        (tag / "xib_complete.json").write_text(json.dumps({"mlflow_run_id": run_id}))
        run_record.write_record(ckpt, run_id)
        if run_id == crashed:
            assert run_record.continuable_run(client, ckpt, tag.name) == crashed
        else:
            with pytest.raises(XibError, match="is training this modality now"):
                run_record.continuable_run(client, ckpt, tag.name)
