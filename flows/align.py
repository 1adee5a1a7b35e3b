"""Alignment flow: bootstrap, then per modality features and training as parallel tasks.

Each alignment task launches its own DeepSpeed/torchrun subprocess; video waits for the image
projection it starts from.
"""

from __future__ import annotations

from prefect import flow

from flows.common import project_root, stage_task


@flow(name="xib-align", log_prints=True)
def align_flow(overrides: list[str] | None = None, force: bool = False) -> dict[str, str]:
    overrides = list(overrides or [])
    root = project_root(overrides)
    run_stage = stage_task(overrides)
    bootstrap = run_stage("bootstrap", overrides, root, force)
    features = {
        m: run_stage.submit(f"features@{m}", overrides, root, force, wait_for=[bootstrap])
        for m in ("image", "pc", "audio", "video")
    }
    aligned = {
        m: run_stage.submit(f"align@{m}", overrides, root, force, wait_for=[features[m]])
        for m in ("image", "pc", "audio")
    }
    aligned["video"] = run_stage.submit(
        "align-video", overrides, root, force, wait_for=[features["video"], aligned["image"]]
    )
    return {m: future.result() for m, future in aligned.items()}
