"""The training loop's named steps (xib.train.loop), each driven on its own with a real DeepSpeed
engine in this process (one rank, gloo): validate, train_step, fit + save, resume, finish."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_fixtures import make_world

STEPS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A tiny world and its config, with a one-rank process group for the module's tests."""
    import torch.distributed as dist

    from xib.config import load_config
    from xib.train.worker import setup_distributed

    root = tmp_path_factory.mktemp("loop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XIB_ROOT", str(root))
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
                dist.destroy_process_group()


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


def test_fit_saves_and_resume_restores_the_same_state(world) -> None:
    from xib.train import checkpointing, loop

    cfg, root = world
    job, engine = loop.setup(cfg, 0, 1, 0)
    done = loop.fit(job, engine, loop.Progress())
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
