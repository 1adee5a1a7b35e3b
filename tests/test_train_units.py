"""Alignment training pieces without processes: DeepSpeed config, LR schedule, task mixture,
checkpoint validity, secret scrubbing."""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from pathlib import Path

import pytest


@functools.cache
def _base_train_cfg():
    from xib.config import load_config

    return load_config().train


def _train_cfg(**overrides):
    from dataclasses import replace

    return replace(_base_train_cfg(), **overrides)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_ds_config_is_concrete(stage: int) -> None:
    from xib.train.ds_config import build_ds_config

    cfg = build_ds_config(
        _train_cfg(zero_stage=stage, micro_batch_size=4, grad_accum=3, dtype="bf16"), world_size=2
    )
    assert cfg["train_batch_size"] == 4 * 3 * 2
    assert cfg["train_micro_batch_size_per_gpu"] == 4 and cfg["gradient_accumulation_steps"] == 3
    assert cfg["zero_optimization"]["stage"] == stage
    assert cfg["bf16"]["enabled"] is False  # CPU trains fp32 whatever the config says
    assert "optimizer" not in cfg and "scheduler" not in cfg
    assert "auto" not in json.dumps(cfg)
    assert build_ds_config(_train_cfg(dtype="bf16"), 8, on_accelerator=True)["bf16"]["enabled"] is True


def test_ds_config_rejects_bad_values() -> None:
    from xib.train.ds_config import build_ds_config

    with pytest.raises(ValueError, match="zero_stage"):
        build_ds_config(_train_cfg(zero_stage=4), 2)
    with pytest.raises(ValueError, match="dtype"):
        build_ds_config(_train_cfg(dtype="fp8"), 2)


def test_lr_warmup_then_cosine_to_min_ratio() -> None:
    from xib.train.loop import lr_factor

    factors = [lr_factor(s, 10, 100, 0.1) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[100] == pytest.approx(0.1)


def test_task_mixture_by_sqrt_of_size_and_deterministic() -> None:
    from xib.train.dataset import MixtureSampler, task_weights

    assert task_weights({"caption": 400, "qa": 100}, "sqrt") == pytest.approx({"caption": 2 / 3, "qa": 1 / 3})
    assert task_weights({"caption": 400, "qa": 100}, "proportional") == pytest.approx(
        {"caption": 0.8, "qa": 0.2}
    )
    with pytest.raises(ValueError, match="mix"):
        task_weights({"a": 1}, "cubic")

    class Data:
        by_task = {"caption": list(range(400)), "qa": list(range(400, 500))}

    sampler = MixtureSampler(Data(), "sqrt", seed=0, rank=0, world_size=2)  # type: ignore[arg-type]
    drawn = [i for step in range(300) for i in sampler.indices(step, 0, 8)]
    share_qa = sum(i >= 400 for i in drawn) / len(drawn)
    assert share_qa == pytest.approx(1 / 3, abs=0.03)
    assert sampler.indices(17, 0, 8) == sampler.indices(17, 0, 8)  # a function of the step: resumable
    # the draw every published figure was trained on (numpy's Generator.choice over the task's list)
    assert sampler.indices(17, 0, 8) == [273, 99, 29, 453, 29, 448, 207, 466]
    other_rank = MixtureSampler(Data(), "sqrt", seed=0, rank=1, world_size=2)  # type: ignore[arg-type]
    assert other_rank.indices(17, 0, 8) != sampler.indices(17, 0, 8)
    assert max(Counter(drawn).values()) < 20


def _fake_tag(ckpt: Path, step: int, complete: bool = True, world_size: int = 2) -> Path:
    from xib.train import signing
    from xib.train.checkpointing import MARKER, tag_for

    tag = ckpt / tag_for(step)
    tag.mkdir(parents=True)
    for rank in range(world_size):
        (tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"x" * (100 + rank))
    if complete:
        info = {
            "step": step,
            "files": signing.manifest(tag, exclude=MARKER),
            "world_size": world_size,
            "zero_stage": 2,
            "modality": "image",
        }
        (tag / MARKER).write_text(json.dumps(signing.sign(info)))
    return tag


def test_latest_valid_checkpoint_skips_torn_ones(tmp_path: Path) -> None:
    from xib.train.checkpointing import find_latest, prune

    expect = {"world_size": 2, "zero_stage": 2, "modality": "image"}
    assert find_latest(tmp_path / "none", expect).tag is None
    _fake_tag(tmp_path, 10)
    _fake_tag(tmp_path, 20)
    truncated = _fake_tag(tmp_path, 30)
    (truncated / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"x" * 7)
    _fake_tag(tmp_path, 40, complete=False)
    _fake_tag(tmp_path, 50, world_size=4)
    found = find_latest(tmp_path, expect)
    assert found.tag == "step00000020" and found.step == 20
    reasons = "\n".join(found.skipped)
    assert "step00000050 skipped: saved with world_size=4, this run uses 2" in reasons
    assert "step00000040 skipped: no completion marker" in reasons
    assert (
        "step00000030 skipped: file zero_pp_rank_1_mp_rank_00_optim_states.pt is 7 bytes, expected 101"
        in reasons
    )
    prune(tmp_path, keep=1, expect=expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step00000020",
        "step00000030",
        "step00000040",
        "step00000050",
    ]


def test_secrets_never_reach_mlflow() -> None:
    from xib.train.tracking import param_key, scrub

    clean = scrub(
        {
            "infra.mlflow_tracking_uri": "postgresql://xib:hunter2@db:5432/mlflow",
            "infra.aws_secret_access_key": "abc",
            "infra.password": "p",
            "infra.api_token": "t",
            "model.projection.num_query_tokens": 6,
            "bootstrap.llm.arch.num_key_value_heads": 2,
            "model.generation.max_new_tokens": 10,
            "note": "key AKIAABCDEFGHIJKLMNOP in text",
            "infra.s3_endpoint_url": "",
        }
    )
    assert clean["infra.mlflow_tracking_uri"] == "postgresql://db:5432/mlflow"
    assert (
        clean["infra.aws_secret_access_key"] == clean["infra.password"] == clean["infra.api_token"] == "***"
    )
    assert clean["bootstrap.llm.arch.num_key_value_heads"] == 2
    assert clean["model.projection.num_query_tokens"] == 6 and clean["model.generation.max_new_tokens"] == 10
    assert "AKIA" not in clean["note"] and clean["infra.s3_endpoint_url"] == ""
    assert param_key("gate.tolerances.caption/*/cider") == "gate.tolerances.caption/_/cider"


def test_recipe_hash_changes_with_what_is_learned_not_with_how_often_it_saves(xib_root):
    from xib.config import load_config
    from xib.train.checkpointing import recipe_hash

    base = recipe_hash(load_config(["train.anchor.enabled=false"]))
    assert recipe_hash(load_config(["train.anchor.enabled=false", "train.checkpoint_every=7"])) == base
    assert recipe_hash(load_config(["train.anchor.enabled=false", "train.lr=0.5"])) != base
    assert recipe_hash(load_config(["train.anchor.enabled=true"])) != base
    assert recipe_hash(load_config(["train.anchor.enabled=false", "modality=audio"])) != base


def test_the_launcher_hashes_the_llm_once_and_hands_it_to_the_workers(tmp_path: Path, monkeypatch) -> None:
    from xib.config import load_config
    from xib.train import tracking
    from xib.train.launch import worker_env

    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "config.json").write_text("{}")
    (llm / "model.safetensors").write_bytes(b"weights")
    cfg = load_config()
    cfg.model.llm.path = str(llm)
    hashed = tracking.weights_fingerprint(llm)
    monkeypatch.delenv(tracking.LLM_FINGERPRINT_ENV, raising=False)
    assert tracking.llm_fingerprint(cfg) == hashed  # a worker started by hand hashes for itself
    env = worker_env(cfg, "", hashed)
    assert env[tracking.LLM_FINGERPRINT_ENV] == hashed
    monkeypatch.setenv(tracking.LLM_FINGERPRINT_ENV, "stale")
    assert tracking.LLM_FINGERPRINT_ENV not in worker_env(cfg)  # never a value left in the shell
    monkeypatch.setenv(tracking.LLM_FINGERPRINT_ENV, hashed)
    (llm / "model.safetensors").write_bytes(b"other weights")  # read from the environment, not re-hashed
    assert tracking.llm_fingerprint(cfg) == hashed != tracking.weights_fingerprint(llm)
