"""Same seed, same machine: two alignment runs give bit-identical projections. Across machines: the
instruction-set pins of `train.determinism` reach the workers and take effect in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_fixtures import make_world

from xib.config import load_config
from xib.train.determinism import ISA_VARIABLES, describe, pinned_env

SHORT = [  # the real launch: torchrun, two gloo ranks all-reducing every step
    "train.launcher=torchrun",
    "train.procs=2",
    "train.steps=4",
    "train.checkpoint_every=100",
    "train.eval_every=100",
    "train.anchor.enabled=true",
]


def _train(root: Path, *extra: str) -> dict[str, torch.Tensor]:
    from xib.models.checkpoint import load_projection
    from xib.train.launch import run_alignment

    cfg = load_config([*make_world(root), *SHORT, f"paths.root={root}", *extra])
    assert run_alignment(cfg, "image", quiet=True) == 0
    projection, _ = load_projection(root / "artifacts" / "align" / "image")
    return projection.state_dict()


@pytest.mark.slow
def test_two_short_runs_give_identical_projections(xib_root: Path, tmp_path_factory) -> None:
    # Tensors, not file bytes: safetensors writes its header's metadata in a per-process order.
    first = _train(xib_root)
    # and torch's NaN fill of new tensors (off by default: it only costs time) changes no bit either:
    # no kernel of the step reads memory it did not write
    second = _train(tmp_path_factory.mktemp("again"), "train.determinism.fill_uninitialized_memory=true")
    assert first.keys() == second.keys() and first
    for key, value in first.items():
        assert torch.equal(value, second[key]), key  # bit for bit, not approximately


def test_pins_reach_the_workers_and_a_user_setting_wins(monkeypatch) -> None:
    from xib.train.launch import worker_env

    cfg = load_config([])
    assert pinned_env(cfg) == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    for var in ISA_VARIABLES.values():
        monkeypatch.delenv(var, raising=False)
    assert all(worker_env(cfg)[var] == value for var, value in pinned_env(cfg).items())
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert worker_env(cfg)["ATEN_CPU_CAPABILITY"] == "default"
    unpinned = load_config(["train.determinism.cpu_capability=", "train.determinism.mkl_cbwr="])
    assert set(pinned_env(unpinned)) == {"ONEDNN_MAX_CPU_ISA"}


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="the pins are x86 (AVX2) ones"
)
def test_apply_pins_a_fresh_process_to_avx2() -> None:
    """`apply` at the start of a process (after `import torch`, before any computation) takes effect."""
    code = (
        "import json, torch; from xib.config import load_config; from xib.train import determinism; "
        "determinism.apply(load_config([]), 1); torch.ones(8).sum(); print(json.dumps(determinism.describe()))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES.values()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["cpu_capability"] == "AVX2" and info["threads"] == 1 and info["deterministic"]
    assert info["ATEN_CPU_CAPABILITY"] == "avx2" and describe()["torch"] == torch.__version__
