"""`xib seeds` on a tiny config: every seed key reaches every stage, recipes share one seed's data and
caches, an interrupted sweep resumes without rerunning finished stages, and the table's statistics.

The stage commands are replaced by ones that only write each stage's declared outputs (the real
ones are the pipeline, minutes per seed); evaluation writes metrics computed from the composed
config it receives, so what the table shows is what the overrides made of each run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xib.config import load_config
from xib.pipeline.seeds import markdown, rows_for, summary

PAIRS = ["image_pc", "audio_video"]
CONF = [
    "eval.seeds.seeds=[0,1]",
    "eval.seeds.recipes.paper_faithful=['train.anchor.enabled=false']",
    "eval.discrn.pairs=[image_pc,audio_video]",
]


def _fake_commands(calls: list[tuple[str, tuple[str, ...], Path]], fail: set[str]):
    """Each stage command writes its dvc.yaml outputs; `evaluate` writes metrics from its config."""
    from xib.stages import load_stages

    stages = load_stages()

    def make(name: str):
        def run(args: list[str]) -> int:
            cfg = load_config(args)
            root = Path(cfg.paths.root)
            calls.append((name, tuple(args), root))
            if name in fail:
                return 3
            for stage in stages.values():
                if stage.command == name and all(a in args for a in stage.args):
                    for out in stage.outs:
                        path = root / out
                        if out.endswith(".json"):
                            path.parent.mkdir(parents=True, exist_ok=True)
                            path.write_text("{}")
                        else:
                            path.mkdir(parents=True, exist_ok=True)
                            (path / "done").write_text(name)
            if name == "eval":
                base = (0.9 if cfg.train.anchor.enabled else 0.5) + cfg.seed / 100
                train_seed = cfg.data.world.train_seed + cfg.model.encoder_pretrain.seed
                metrics = {
                    "discrn/image_pc": base,
                    "discrn/image_pc/image_first": base + 0.01,
                    "discrn/image_pc/pc_first": base - 0.01,
                    "discrn/audio_video": base + train_seed / 1000,
                }
                (root / "artifacts/eval/metrics.json").write_text(json.dumps(metrics))
            return 0

        return run

    names = {stage.command for stage in stages.values()}
    return {name: make(name) for name in names}


def test_sweep_runs_every_recipe_of_a_seed_then_resumes(xib_root: Path, monkeypatch) -> None:
    import xib.commands
    from xib.pipeline.seeds import run_seeds

    calls: list[tuple[str, tuple[str, ...], Path]] = []
    fail = {"eval"}
    monkeypatch.setattr(xib.commands, "load_commands", lambda: _fake_commands(calls, fail))
    conf = [*CONF, "eval.seeds.seeds=[1]", f"eval.seeds.report={xib_root / 'seeds.md'}"]
    cfg = load_config(conf)
    workdir = Path(cfg.eval.seeds.workdir)

    report = run_seeds(cfg, conf, in_process=True)  # the evaluation fails: nothing is tabled
    results = json.loads((workdir / "results.json").read_text())["results"]
    assert results["default"]["1"]["status"].startswith("evaluate failed")
    assert results["paper_faithful"]["1"]["status"] == "not run: the seed's shared stages failed"
    assert "not finished" in report.read_text()
    first_run = [n for n, _, _ in calls]
    assert first_run[0] == "world" and "gate" not in first_run and first_run[-1] == "eval"

    fail.clear()
    calls.clear()
    run_seeds(cfg, conf, in_process=True)  # resumed: the failed evaluation, then the second recipe
    assert [n for n, _, r in calls if r == workdir / "seed-1" / "default"] == ["eval"]
    paper = [(n, a) for n, a, r in calls if r == workdir / "seed-1" / "paper_faithful"]
    assert [n for n, _ in paper] == ["align", "align", "align", "align", "eval"]  # never data or features
    for _, args in paper:
        assert {"seed=1", "model.encoder_pretrain.seed=1", "data.world.train_seed=1"} <= set(args)
        assert "train.anchor.enabled=false" in args
    shared = workdir / "seed-1" / "paper_faithful" / "artifacts" / "features"
    assert (
        shared.is_symlink() and shared.resolve() == (workdir / "seed-1/default/artifacts/features").resolve()
    )
    text = report.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| image_pc, both orders"))
    assert "| 0.910 | 0.910 | - | 1: 0.910 |" in row and "| 0.510 | 0.510 | - | 1: 0.510 |" in row
    av = next(line for line in text.splitlines() if line.startswith("| audio_video, both orders"))
    assert "1: 0.912" in av  # the seed also moved the world's training renders and the encoders' seed
    assert "audio_video, audio first | - | - | - | -" in text  # a metric no run wrote stays empty


def test_table_over_seeds() -> None:
    ok = {"status": "ok"}
    results = {
        "default": {
            "0": {**ok, "metrics": {"discrn/image_pc": 0.90}},
            "1": {**ok, "metrics": {"discrn/image_pc": 0.91}},
        },
        "paper_faithful": {
            "0": {**ok, "metrics": {"discrn/image_pc": 0.5}},
            "1": {"status": "x", "metrics": {}},
        },
    }
    text = markdown(results, ["image_pc"], [0, 1], {"default": [], "paper_faithful": ["a=b"]}, "xib seeds")
    row = next(line for line in text.splitlines() if line.startswith("| image_pc, both orders"))
    assert "| 0.905 | 0.900 | 0.007 | 0: 0.900 / 1: 0.910 |" in row  # mean, min, sample std, by seed
    assert "| 0.500 | 0.500 | - | 0: 0.500 |" in row
    assert "paper_faithful `a=b`: seeds finished [0]; not finished {1: 'x'}" in text


def test_adopted_first_run_is_read_not_rerun(xib_root: Path, monkeypatch, tmp_path_factory) -> None:
    import xib.commands
    from xib.pipeline.seeds import run_seeds

    demo = tmp_path_factory.mktemp("demo")
    for sub in ("data", "artifacts/bootstrap", "artifacts/features", "artifacts/eval"):
        (demo / sub).mkdir(parents=True)
    (demo / "artifacts/eval/metrics.json").write_text(json.dumps({"discrn/image_pc": 0.97}))
    calls: list[tuple[str, tuple[str, ...], Path]] = []
    monkeypatch.setattr(xib.commands, "load_commands", lambda: _fake_commands(calls, set()))
    conf = [
        *CONF,
        "eval.seeds.seeds=[0]",
        f"eval.seeds.adopt_first={demo}",
        f"eval.seeds.report={demo / 's.md'}",
    ]
    report = run_seeds(load_config(conf), conf, in_process=True)
    assert {r.name for _, _, r in calls} == {"paper_faithful"}
    assert "0: 0.970" in report.read_text() and "taken from finished runs" in report.read_text()


def test_summary_and_rows() -> None:
    stats = summary([0.9, 0.95, 1.0])
    assert stats["mean"] == pytest.approx(0.95) and stats["min"] == 0.9
    assert stats["std"] == pytest.approx(0.05)
    assert math.isnan(summary([0.9])["std"])
    assert rows_for(["pc_video"]) == [
        ("pc_video, both orders", "discrn/pc_video"),
        ("pc_video, pc first", "discrn/pc_video/pc_first"),
        ("pc_video, video first", "discrn/pc_video/video_first"),
    ]
    text = markdown({"default": {}}, ["image_pc"], [0], {"default": []}, "xib seeds")
    assert "seeds finished none" in text


def test_train_seed_redraws_training_renders_only() -> None:
    from xib.data.generate import PlannedItem, render_item

    def render(split: str, train_seed: int) -> bytes:
        world = load_config([f"data.world.train_seed={train_seed}"]).data.world
        item = PlannedItem("image-000007", 7, "image", "dog-0001", "dog", split)
        return render_item(item, world, 0)

    assert render("test", 0) == render("test", 5) and render("val", 0) == render("val", 5)
    assert render("train", 0) != render("train", 5)
