"""`xib` commands of the train room: `xib features modality=m`, `xib align modality=m`."""

from __future__ import annotations

from xib.commands import command
from xib.train import determinism


@command("features")
def features(overrides: list[str]) -> int:
    """Cache a modality's frozen-encoder features (train/val/test); reused when unchanged."""
    import logging

    from xib.config import load_config
    from xib.train.features import build_all

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(overrides)
    determinism.apply(cfg, cfg.train.determinism.feature_threads)
    for split, path in build_all(cfg, cfg.modality.name).items():
        print(f"features {cfg.modality.name}/{split}: {path}")
    return 0


@command("align")
def align(overrides: list[str]) -> int:
    """Train one modality's projection (DeepSpeed ZeRO; LLM and encoders frozen)."""
    from xib.config import load_config
    from xib.train.launch import run_alignment

    cfg = load_config(overrides)
    return run_alignment(cfg, cfg.modality.name)
