"""Fault tolerance of alignment training: 2 CPU processes (torchrun, gloo, ZeRO-2) killed with SIGKILL
mid-run resume from the last complete checkpoint and end on the loss of an uninterrupted run; a torn
checkpoint is skipped with a message."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from test_train_fixtures import make_world

STEPS, EVERY, KILL_AT = 40, 8, 19
# Same data stream (a function of the step), same dropout seeds, optimizer and LR state restored:
# the resumed run replays the uninterrupted one up to float rounding of the reloaded fp32 state.
LOSS_TOLERANCE = 1e-4


def _events(lines: list[str]) -> list[dict]:
    from xib.train.loop import PROGRESS_PREFIX

    return [json.loads(x[len(PROGRESS_PREFIX) :]) for x in lines if x.startswith(PROGRESS_PREFIX)]


def _final_loss(root: Path) -> float:
    info = json.loads((root / "artifacts/align/image/projection.json").read_text())
    return float(info["provenance"]["final_loss"])


@pytest.mark.slow
def test_sigkill_resume_matches_uninterrupted_run(xib_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xib.config import load_config
    from xib.train import checkpointing
    from xib.train.launch import command_line, run_alignment, worker_env, write_run_config

    overrides = make_world(xib_root) + [
        f"train.steps={STEPS}",
        f"train.checkpoint_every={EVERY}",
        "train.eval_every=0",
        "train.keep_checkpoints=3",
        "train.launcher=torchrun",
    ]
    cfg = load_config(overrides)
    align = xib_root / "artifacts/align/image"

    # 1. the uninterrupted reference
    assert run_alignment(cfg, "image", quiet=True, track=False) == 0
    reference = _final_loss(xib_root)
    shutil.rmtree(align)

    # 2. the same run, killed with SIGKILL (launcher and both workers) after KILL_AT steps
    config_path = write_run_config(cfg, "image")
    proc = subprocess.Popen(
        command_line(cfg, config_path),
        env=worker_env(cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        events = _events([line])
        if events and events[0].get("event") == "step" and events[0]["step"] >= KILL_AT:
            killed_at = events[0]["step"]
            # torchrun starts each worker in its own session: kill the launcher and every worker
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for member in family:
                member.send_signal(signal.SIGKILL)
            psutil.wait_procs(family, timeout=30)
            break
    proc.wait()
    assert killed_at is not None, "".join(seen[-20:])
    assert killed_at < STEPS, "the run finished before it could be killed"
    assert not (align / "projection.safetensors").exists()
    found = checkpointing.find_latest(align / "ds", {"world_size": 2, "zero_stage": 2, "modality": "image"})
    assert found.tag is not None and killed_at - found.step <= EVERY

    # 3. a torn checkpoint newer than the last good one: shards written, completion marker never
    torn = align / "ds" / checkpointing.tag_for(found.step + EVERY)
    shutil.copytree(align / "ds" / found.tag, torn)
    (torn / checkpointing.MARKER).unlink()

    # 4. restart: skips the torn one, resumes from the last complete one, ends where the reference ended
    capsys.readouterr()
    assert run_alignment(cfg, "image", quiet=False, track=False) == 0
    out = capsys.readouterr().out
    assert f"{torn.name} skipped: no completion marker" in out
    assert f"resumed: tag={found.tag}, step={found.step}" in out
    resumed = _final_loss(xib_root)
    print(f"final loss: uninterrupted {reference!r}, killed at step {killed_at} and resumed {resumed!r}")
    assert abs(resumed - reference) <= LOSS_TOLERANCE * max(1.0, abs(reference))

    # 5. new frozen inputs (features of another encoder): the finished run's checkpoints are stale
    index = xib_root / "artifacts/features/image/train/index.json"
    assert index.is_file()
    info = json.loads(index.read_text())
    index.write_text(json.dumps({**info, "key": "features-of-another-encoder"}))
    capsys.readouterr()
    assert run_alignment(cfg, "image", quiet=False, track=False) == 0
    out = capsys.readouterr().out
    assert "skipped: saved with features=" in out and "resumed:" not in out
