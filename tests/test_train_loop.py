"""The training loop's named steps (xib.train.loop), each driven on its own with a real DeepSpeed
engine in this process (one rank, gloo): validate, train_step, fit + save, resume, finish; and
resume's refusal of checkpoints this job did not write (xib.train.signing), before any loading."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_fixtures import make_world

STEPS = 3
KEY = "test-job-key"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A tiny world and its config, with a one-rank process group for the module's tests."""
    import torch.distributed as dist

    from xib.config import load_config
    from xib.train.worker import setup_distributed, teardown_distributed

    root = tmp_path_factory.mktemp("loop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XIB_ROOT", str(root))
        patch.setenv("XIB_CHECKPOINT_KEY", KEY)
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            patch.delenv(name, raising=False)
        overrides = make_world(root) + [
            "train.launcher=none",
            f"train.steps={STEPS}",
            "train.checkpoint_every=2",
            "train.eval_every=0",
            "train.keep_checkpoints=3",
        ]
        cfg = load_config(overrides)
        owns = not dist.is_initialized()
        setup_distributed("gloo")
        try:
            yield cfg, root
        finally:
            if owns and dist.is_initialized():
                teardown_distributed()


@pytest.fixture(scope="module")
def trained(world):
    from xib.train import loop

    cfg, _ = world
    job, engine = loop.setup(cfg, 0, 1, 0)
    done = loop.fit(job, engine, loop.Progress())
    return job, engine, done


def _projection(engine: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.module.projection.state_dict().items()}


def test_validate_is_repeatable_and_leaves_the_engine_training(world) -> None:
    from xib.train import loop

    cfg, _ = world
    job, engine = loop.setup(cfg, 0, 1, 0)
    engine.train()
    first = loop.validate(job, engine, 0)
    again = loop.validate(job, engine, 1)
    assert math.isfinite(first) and first > 0 and first == again
    assert engine.training
    assert job.tracker.history["val/loss"] == [(0, first), (1, first)]


def test_train_step_trains_only_the_projection_at_the_scheduled_rate(world) -> None:
    from xib.train import loop

    cfg, _ = world
    job, engine = loop.setup(cfg, 0, 1, 0)
    before = _projection(engine)
    frozen = [p.detach().clone() for p in job.model.model.llm.parameters()]
    stats, lr = loop.train_step(job, engine, 0)
    tc = cfg.train
    assert lr == pytest.approx(tc.lr * loop.lr_factor(0, tc.warmup_steps, job.steps, tc.min_lr_ratio))
    assert stats.shape == (4,) and float(stats[0]) > 0 and float(stats[3]) > 0  # loss, tokens
    assert any(not torch.equal(before[k], v) for k, v in _projection(engine).items())
    assert all(torch.equal(a, b) for a, b in zip(frozen, job.model.model.llm.parameters()))


def test_fit_saves_and_resume_restores_the_same_state(world, trained) -> None:
    from xib.train import checkpointing, loop

    cfg, root = world
    job, engine, done = trained
    assert done.step == STEPS and math.isfinite(done.loss)
    assert [s for s, _ in job.tracker.history["train/loss"]] == [1, 2, 3]
    tags = sorted(p.name for p in job.ckpt_dir.iterdir() if checkpointing.TAG_RE.match(p.name))
    assert tags == [checkpointing.tag_for(2), checkpointing.tag_for(3)]  # every 2 steps, and the last

    fresh_job, fresh = loop.setup(cfg, 0, 1, 0)
    assert any(not torch.equal(v, _projection(engine)[k]) for k, v in _projection(fresh).items())
    resumed = loop.resume(fresh_job, fresh)
    assert (resumed.step, resumed.loss) == (done.step, done.loss)
    assert fresh_job.tracker.history == job.tracker.history
    assert all(torch.equal(v, _projection(engine)[k]) for k, v in _projection(fresh).items())

    written = loop.finish(fresh_job, fresh, resumed)
    from xib.models.checkpoint import load_projection

    projection, info = load_projection(root / "artifacts/align/image")
    assert written[0].name == "projection.safetensors"
    assert info["provenance"]["final_loss"] == done.loss and info["provenance"]["steps"] == STEPS
    assert all(torch.equal(v, _projection(engine)[k]) for k, v in projection.state_dict().items())


class Planted:
    """A pickle that runs a command when unpickled (what a planted checkpoint file would hold)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


def _copy_of_checkpoints(job: Any, tmp_path: Path) -> tuple[Any, Path]:
    """The job's checkpoints copied under tmp_path, and a job that resumes from the copy."""
    import dataclasses
    import shutil

    copy = dataclasses.replace(job, out_dir=tmp_path / "align")
    shutil.copytree(job.ckpt_dir, copy.ckpt_dir)
    return copy, copy.ckpt_dir / "step00000003"


def _never_loads(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(engine, "load_checkpoint", lambda *a, **k: calls.append("load") or (None, {}))
    return calls


def _forge(tag: Path, name: str, signature: str) -> None:
    """Rewrite the marker as a forger without the key would: the new file's size and sha256."""
    import json

    from xib.hashing import sha256_file as file_sha256

    info = json.loads((tag / "xib_complete.json").read_text())
    info["files"][name] = {"size": (tag / name).stat().st_size, "sha256": file_sha256(tag / name)}
    (tag / "xib_complete.json").write_text(json.dumps({**info, "signature": signature}))


def test_a_changed_file_is_refused_before_anything_is_loaded(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xib.errors import XibError
    from xib.train import loop

    job, engine, _ = trained
    copy, tag = _copy_of_checkpoints(job, tmp_path)
    optim = next(tag.glob("*optim_states.pt"))
    data = bytearray(optim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: not torn, tampered
    optim.write_bytes(bytes(data))
    calls = _never_loads(engine, monkeypatch)
    with pytest.raises(XibError) as refused:
        loop.resume(copy, engine)
    message = str(refused.value)
    assert (
        "\n" not in message and f"{tag} refused, nothing loaded: file {optim.name} does not match" in message
    )
    assert calls == []


@pytest.mark.parametrize("signature", ["hmac-sha256:" + "0" * 64, ""])
def test_a_planted_file_with_a_forged_marker_is_refused_unrun(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signature: str
) -> None:
    from xib.errors import XibError
    from xib.train import loop

    job, engine, _ = trained
    copy, tag = _copy_of_checkpoints(job, tmp_path)
    sentinel = tmp_path / "code-ran"
    torch.save({"module": Planted(sentinel)}, tag / "mp_rank_00_model_states.pt")
    _forge(tag, "mp_rank_00_model_states.pt", signature)
    calls = _never_loads(engine, monkeypatch)
    with pytest.raises(XibError, match="refused, nothing loaded: the marker"):
        loop.resume(copy, engine)
    assert calls == [] and not sentinel.exists()


def test_without_a_key_the_weights_only_loader_still_refuses_code(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key: an unsigned manifest a forger can rewrite. DeepSpeed's files are then read with torch's
    weights-only unpickler, which refuses the planted object instead of running it."""
    from xib.errors import XibError
    from xib.train import loop

    monkeypatch.delenv("XIB_CHECKPOINT_KEY")
    job, engine, _ = trained
    copy, tag = _copy_of_checkpoints(job, tmp_path)
    with pytest.raises(XibError, match="the marker is signed but XIB_CHECKPOINT_KEY is not set"):
        loop.resume(copy, engine)
    sentinel = tmp_path / "code-ran"
    torch.save({"module": Planted(sentinel)}, tag / "mp_rank_00_model_states.pt")
    _forge(tag, "mp_rank_00_model_states.pt", "")
    with pytest.raises(XibError, match="refused by the weights-only loader") as refused:
        loop.resume(copy, engine)
    assert "\n" not in str(refused.value) and not sentinel.exists()


def test_the_launcher_refuses_a_tampered_checkpoint_before_any_worker_starts(
    world, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xib.errors import XibError
    from xib.train import launch

    cfg, _ = world
    job, _, _ = trained
    started: list[str] = []
    monkeypatch.setattr(launch, "_run_in_process", lambda *a: started.append("worker") or 0)
    assert launch.run_alignment(cfg, "image", quiet=True, track=False) == 0 and started == ["worker"]
    shard = job.ckpt_dir / "step00000003" / "mp_rank_00_model_states.pt"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(
        XibError, match="step00000003 refused, nothing loaded: file mp_rank_00_model_states.pt"
    ):
        launch.run_alignment(cfg, "image", quiet=True, track=False)
    assert started == ["worker"]
