"""Alignment in one process (launcher=none): only the projection trains, the anchor loss exists only
when enabled, ZeRO-3 export consolidates the projection, MLflow gets params/tags/metrics/artifacts,
and video starts from the trained image projection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_fixtures import make_world


def _setup(overrides: list[str]):
    from xib.config import load_config
    from xib.train import model_setup
    from xib.train.dataset import InstructionDataset, read_instructions
    from xib.train.features import FeatureStore

    cfg = load_config(overrides)
    root = Path(cfg.paths.root)
    store = FeatureStore(root / "artifacts/features/image/train")
    data = InstructionDataset(read_instructions(root / "data/instruct/image/train.jsonl"), store)
    torch.manual_seed(0)
    setup = model_setup.build(cfg, "image", store.feature_dim, torch.device("cpu"))
    return cfg, setup, [data[i] for i in range(4)]


def test_only_projection_trains_and_anchor_only_when_enabled(xib_root: Path) -> None:
    from xib.train.loop import param_groups

    overrides = make_world(xib_root)
    cfg, setup, records = _setup(overrides + ["train.anchor.enabled=false"])
    out = setup.objective(setup.collate(records))
    assert "anchor_loss" not in out and torch.equal(out["loss"].detach(), out["lm_loss"])
    out["loss"].backward()
    groups = param_groups(setup.objective, cfg.train.weight_decay)
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in setup.projection.parameters()}
    assert all(p.grad is None for p in setup.model.llm.parameters())

    _, anchored, _ = _setup(overrides + ["train.anchor.enabled=true", "train.anchor.weight=2.0"])
    assert anchored.objective.anchor_weight == 1.0  # the demo's own weight for image wins over `weight`
    out = anchored.objective(anchored.collate(records))
    assert float(out["anchor_loss"]) > 0
    torch.testing.assert_close(out["loss"].detach(), out["lm_loss"] + out["anchor_loss"])
    _, doubled, _ = _setup(
        overrides + ["train.anchor.enabled=true", "train.anchor.weight_by_modality.image=2.0"]
    )
    torch.testing.assert_close(
        doubled.objective(doubled.collate(records))["anchor_loss"], 2 * out["anchor_loss"]
    )


@pytest.mark.slow
def test_zero3_run_exports_projection_and_tracks(xib_root: Path) -> None:
    import mlflow

    from xib.config import load_config
    from xib.models.checkpoint import load_projection
    from xib.train import model_setup
    from xib.train.launch import run_alignment

    overrides = make_world(xib_root) + [
        "train.launcher=none",
        "train.zero_stage=3",
        "train.steps=99",
        "+train.steps_by_modality={image: 4, pc: 7}",  # image's own entry wins over `steps`
        "train.lr=1.0e-4",
        "+train.lr_by_modality={image: 1.0e-3}",  # and over `lr`
        "train.checkpoint_every=2",
        "train.eval_every=2",
        "train.anchor.enabled=true",
    ]
    cfg = load_config(overrides)
    assert run_alignment(cfg, "image", quiet=True) == 0
    projection, info = load_projection(xib_root / "artifacts/align/image")
    assert info["provenance"]["zero_stage"] == 3 and info["provenance"]["steps"] == 4
    torch.manual_seed(0)
    _, fresh, _ = _setup(overrides)  # the same seed's initial projection
    trained = projection.state_dict()
    assert trained.keys() == fresh.projection.state_dict().keys()
    assert all(v.numel() > 0 for v in trained.values())  # consolidated, not ZeRO-3's empty partitions
    assert any(not torch.equal(trained[k], v) for k, v in fresh.projection.state_dict().items())

    mlflow.set_tracking_uri(cfg.infra.mlflow_tracking_uri)
    run = mlflow.MlflowClient().get_run(info["provenance"]["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.zero_stage"] == "3" and run.data.params["modality.name"] == "image"
    for tag in ("git.commit", "llm.fingerprint", "encoder.fingerprint", "data.instruct.image"):
        assert run.data.tags[tag]
    assert {
        "train/loss",
        "train/lr",
        "train/samples_per_s",
        "train/tokens_per_s",
        "train/anchor_loss",
        "val/loss",
    } <= set(run.data.metrics)
    from xib.schedule import lr_factor

    tc = cfg.train
    logged = [m.value for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/lr")]
    schedule = [1.0e-3 * lr_factor(s, tc.warmup_steps, 4, tc.min_lr_ratio) for s in range(4)]
    assert logged and all(v == pytest.approx(schedule[i]) for i, v in enumerate(logged))
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"projection", "plots", "samples"} <= artifacts
    png = mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")[0].path
    assert png.endswith("training_curve.png")

    # video starts from the trained image projection (modality.init_from)
    video = load_config(
        [o.replace("modality=image", "modality=video") for o in overrides] + ["modality.init_from=image"]
    )
    setup = model_setup.build(video, "video", 16, torch.device("cpu"))
    assert setup.init_report["kind"] == "xib" and setup.init_report["from_modality"] == "image"
    for key, value in setup.projection.state_dict().items():
        assert torch.equal(value, trained[key])
