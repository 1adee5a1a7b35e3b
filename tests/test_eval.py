"""`run_eval` on a tiny real project: metrics, plots, batching, and a failed evaluation writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xib.config import load_config
from xib.errors import DataError, XibError
from xib.eval.run import build_runner, checkpoint_dirs, run_eval
from xib.eval.testing import make_tiny_project

OVERRIDES = [
    "eval.modalities=[image,pc]",
    "eval.discrn.pairs=[image_pc]",
    "eval.batch_size=8",
    "eval.threads=1",
    "gate.model_name=xib-eval-test",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny project (LLM, checkpoints, caches, data) built once and copied per test."""
    root = tmp_path_factory.mktemp("tiny-project")
    make_tiny_project(load_config([f"paths.root={root}", *OVERRIDES]))
    return root


@pytest.fixture
def cfg(template: Path, xib_root: Path):
    shutil.copytree(template, xib_root, dirs_exist_ok=True)
    return load_config(OVERRIDES)


def test_run_eval_writes_every_metric_and_plot(cfg) -> None:
    metrics = run_eval(cfg)
    out = Path(cfg.eval.output)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for m in ("image", "pc"):
        for name in (f"caption/{m}/cider", f"caption/{m}/bleu4", f"qa/{m}/accuracy", f"classify/{m}/accuracy",
                     f"classify/{m}/generate_accuracy"):  # fmt: skip
            assert name in metrics
    for name in ("discrn/image_pc", "discrn/image_pc/image_first", "discrn/image_pc/pc_first",
                 "discrn/image_pc/logits", "baseline/oracle_caption/image_pc", "baseline/predicted_caption/image_pc",
                 "hybrid/image_pc/image_as_text", "hybrid/image_pc/pc_as_text", "chance/image_pc"):  # fmt: skip
        assert name in metrics, name
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if not k.startswith("caption/"))
    assert metrics["chance/image_pc"] == 0.5  # the tiny DisCRn file is balanced
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "baselines.png", "discrn_confusion.png", "per_modality.png",
    ]  # fmt: skip
    candidate = json.loads((out / "candidate.json").read_text())
    assert set(candidate["checkpoints"]) == {"image", "pc"} and candidate["metrics"] == on_disk
    report = json.loads((out / "report.json").read_text())
    assert report["discrn"]["discrn/image_pc"]["records"][0]["order"] in {"image_first", "pc_first"}


def test_batched_scoring_matches_one_at_a_time(cfg) -> None:
    from xib.eval.tasks import _prompts, read_records

    checkpoints = checkpoint_dirs(cfg)
    batched, single = (
        build_runner(cfg, checkpoints, batch_size=8),
        build_runner(cfg, checkpoints, batch_size=1),
    )
    rows = [
        r for r in read_records(Path(cfg.paths.data) / "instruct/image/test.jsonl") if r["task"] == "classify"
    ]
    cands = [r["candidates"] for r in rows]
    a = batched.score(_prompts(batched, "image", rows), cands)
    b = single.score(_prompts(single, "image", rows), cands)
    assert len(a) == len(rows) and all(len(x) == len(c) for x, c in zip(a, cands))
    assert [x for row in a for x in row] == pytest.approx([x for row in b for x in row], abs=1e-4)


def test_failed_evaluation_writes_and_registers_nothing(cfg) -> None:
    from xib.registry.registry import run_gate

    bad = Path(cfg.paths.data) / "discrn/image_pc/test.json"
    rows = json.loads(bad.read_text())
    rows[3]["label"] = 7
    bad.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 3: label must be 0"):
        run_eval(cfg)
    out = Path(cfg.eval.output)
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    with pytest.raises(XibError, match="run `xib eval` first"):
        run_gate(cfg)
    assert not (Path(cfg.paths.root) / "mlflow.db").exists()  # the registry was never touched


def test_missing_checkpoint_is_a_clear_error(cfg) -> None:
    shutil.rmtree(Path(cfg.paths.artifacts) / "align" / "pc")
    with pytest.raises(XibError, match=r"no trained projection for \['pc'\]"):
        run_eval(cfg)


def test_ablation_report_tables_every_variant(tmp_path: Path) -> None:
    from xib.eval.ablate import _plot, markdown

    variants = {"default": [], "linear": ["model.projection.kind=linear"]}
    results = {
        "default": {
            "status": "ok",
            "metrics": {"discrn/image_pc": 0.91, "caption/image/exact_match": 0.95},
        },
        "linear": {"status": "align pc failed (exit 1)", "metrics": {}},
    }
    text = markdown(variants, results, "xib ablate", "ablations.png")
    assert "| default | (none) | ok | 0.950 | 0.910 |" in text
    assert "| linear | `model.projection.kind=linear` | align pc failed (exit 1) | - | - |" in text
    assert _plot(results, tmp_path / "a.png").stat().st_size > 0
