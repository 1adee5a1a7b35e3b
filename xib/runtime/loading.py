"""A runner from a registered model's artifacts (what `xib.registry.pyfunc.candidate_artifacts`
stages): the config it was evaluated with, its projections, and the frozen LLM and encoders when
they were bundled."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from xib.runtime.runner import Runner, load_model_from_dirs

CONFIG_ARTIFACT = "config"


def runner_from_artifacts(artifacts: Mapping[str, str | os.PathLike[str]]) -> Runner:
    from xib.config import load_config

    arts = {k: Path(v) for k, v in artifacts.items()}
    cfg = load_config(config_file=arts[CONFIG_ARTIFACT])
    if "llm" in arts:
        cfg.model.llm.path = str(arts["llm"])
    for modality in list(cfg.model.encoders):
        if f"encoder_{modality}" in arts:
            cfg.model.encoders[modality].path = str(arts[f"encoder_{modality}"])
    if "image" in cfg.model.encoders and "video" in cfg.model.encoders and "encoder_video" not in arts:
        # video frames go through the image encoder, as in the paper
        if "encoder_image" in arts:
            cfg.model.encoders["video"].path = str(arts["encoder_image"])
    checkpoints = {k[len("projection_") :]: v for k, v in arts.items() if k.startswith("projection_")}
    threads = int(os.environ.get("XIB_SERVE_THREADS", "0"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    return load_model_from_dirs(cfg, checkpoints)
