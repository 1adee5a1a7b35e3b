"""prefect.yaml against a real `prefect server start` on loopback: deploy --all, schedules, a worker run."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
TINY = [
    "data.world.items_per_modality=32",
    "data.world.entities_per_kind=4",
    "data.discrn.examples_per_pair=8",
    "data.discrn.candidate_sample=8",
]


def _prefect(env: dict, *args: str) -> str:
    done = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _post(api: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_deploy_all_schedules_runs_and_a_worker_runs_one(prefect_server, tmp_path):
    env = dict(prefect_server, XIB_REPO=str(REPO), XIB_ROOT=str(tmp_path))
    api = env["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", "xib-process", "--type", "process")
    _prefect(
        env,
        "work-pool",
        "create",
        "xib-k8s",
        "--type",
        "kubernetes",
        "--base-job-template",
        str(REPO / "infra/k8s/gpu-job-template.json"),
    )
    _prefect(env, "--no-prompt", "deploy", "--all")

    deployments = {d["name"]: d for d in _post(api, "/deployments/filter", {})}
    assert {"nightly-data", "weekly-retrain", "weekly-retrain-gpu"} <= set(deployments)
    nightly = deployments["nightly-data"]

    # the scheduler creates future runs from the cron schedule
    deadline = time.monotonic() + 90
    scheduled = []
    while not scheduled and time.monotonic() < deadline:
        runs = _post(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}}})
        scheduled = [r for r in runs if r["state_type"] == "SCHEDULED" and r["auto_scheduled"]]
        time.sleep(2)
    assert scheduled, "no scheduled run was created from the cron schedule"

    # trigger a run now and let a process worker execute it
    out = _prefect(
        env, "deployment", "run", "xib-data/nightly-data", "--params", json.dumps({"overrides": TINY})
    )
    run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    worker = subprocess.run(
        [PREFECT, "worker", "start", "--pool", "xib-process", "--run-once"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as response:
        state = json.loads(response.read())["state_type"]
    assert state == "COMPLETED", worker.stdout[-3000:] + worker.stderr[-3000:]
    assert (tmp_path / "data/discrn").is_dir()
