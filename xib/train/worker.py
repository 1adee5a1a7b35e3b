"""One alignment training process (a DeepSpeed rank): `python -m xib.train.worker --config FILE [overrides]`.

Started by `xib.train.launch` under torchrun or the deepspeed launcher (or in-process with
launcher=none). Trains only `cfg.modality.name`'s projection on cached features; the LLM and the
encoders stay frozen and never reach the optimizer. Rank 0 alone prints progress and logs to MLflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from xib.config import for_modality
from xib.errors import XibError
from xib.train import determinism

log = logging.getLogger("xib.train")

PROGRESS_PREFIX = "@@xib "  # rank 0's machine-readable progress lines, read by the launcher


def emit(event: dict[str, Any]) -> None:
    print(PROGRESS_PREFIX + json.dumps(event, default=str), flush=True)


def parse_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(prog="xib.train.worker")
    parser.add_argument("--config", default="", help="resolved config written by the launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None)  # deepspeed launcher
    args, overrides = parser.parse_known_args(argv)
    return args.config, overrides


def load_worker_config(config_path: str, overrides: list[str]) -> Any:
    """The parent's resolved config file (checked against the schema) plus overrides, or Hydra's."""
    from omegaconf import OmegaConf

    from xib.config import XibConfig, load_config

    if not config_path:
        return load_config(overrides)
    cfg = OmegaConf.merge(OmegaConf.structured(XibConfig), OmegaConf.load(config_path))
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    OmegaConf.set_struct(cfg, True)
    return cfg


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(module: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters only: weight decay on matrices, none on biases, norms and query tokens."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "query_tokens" not in name else no_decay).append(param)
    if not decay and not no_decay:
        raise XibError("the projection has no trainable parameter")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout randomness as a function of the step: a resumed run replays an uninterrupted one."""
    return (int(seed) * 1_000_003 + int(step)) * 4099 + int(rank)


def setup_distributed(backend: str) -> tuple[int, int, int]:
    import deepspeed

    if "RANK" not in os.environ:  # launcher=none: one process, its own rendezvous
        from xib.train.launch import free_port

        os.environ.update(
            {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port()),
            }
        )
    deepspeed.init_distributed(dist_backend=backend)
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def memory_report(engine: Any, rank: int, world: int) -> list[dict[str, float]]:
    """Per rank: RSS after training and its peak (CPU), peak accelerator memory, and the training state this rank holds
    (the optimizer's parameters - ZeRO's flat fp32 partitions - and their Adam moments), in MB."""
    import resource

    import torch
    import torch.distributed as dist

    base = engine.optimizer
    while hasattr(base, "optimizer"):
        base = base.optimizer
    held = 0
    # the optimizer's state is keyed by the tensors it updates (ZeRO: this rank's flat fp32 partitions;
    # ZeRO-3 empties param_groups between steps, so the state is the reliable index)
    for param, state in base.state.items():
        if isinstance(param, torch.Tensor):
            held += param.numel() * param.element_size()
        for value in state.values():
            if isinstance(value, torch.Tensor):
                held += value.numel() * value.element_size()
    import psutil

    mine = torch.tensor(
        [
            psutil.Process().memory_info().rss / 2**20,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0,
            held / 2**20,
        ],
        dtype=torch.float64,
    )
    table = [torch.zeros_like(mine) for _ in range(world)]
    if dist.is_initialized() and world > 1:
        dist.all_gather(table, mine)
    else:
        table = [mine]
    keys = ("rss_mb", "peak_rss_mb", "peak_accelerator_mb", "optimizer_held_mb")
    return [dict(zip(keys, (float(x) for x in row))) for row in table]


def align_dir(cfg: Any, modality: str) -> Path:
    return Path(cfg.paths.artifacts) / "align" / modality


def main(argv: list[str] | None = None) -> int:
    config_path, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg = load_worker_config(config_path, overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch.distributed as dist

    determinism.apply(cfg, cfg.train.threads_per_proc)
    owns_group = not dist.is_initialized()
    rank, world, local_rank = setup_distributed(cfg.train.backend)
    try:
        return train(cfg, rank, world, local_rank)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: Any, rank: int, world: int, local_rank: int) -> int:
    import deepspeed
    import torch
    import torch.distributed as dist
    from torch.optim.lr_scheduler import LambdaLR

    from xib.train import checkpointing, model_setup
    from xib.train.dataset import (
        InstructionDataset,
        MixtureSampler,
        eval_indices,
        instruct_path,
        read_instructions,
    )
    from xib.train.ds_config import build_ds_config
    from xib.train.features import FeatureStore, cache_dir
    from xib.train.tracking import RankZeroLogger, llm_fingerprint, plot_curves

    modality, tc = cfg.modality.name, cfg.train
    steps = int(for_modality(tc, "steps", modality))
    on_accelerator = torch.cuda.is_available() and tc.backend == "nccl"
    device = torch.device(f"cuda:{local_rank}" if on_accelerator else "cpu")
    if on_accelerator:
        torch.cuda.set_device(device)
    out_dir = align_dir(cfg, modality)
    ckpt_dir = out_dir / "ds"
    tracker = RankZeroLogger(cfg, rank)

    stores = {split: FeatureStore(cache_dir(cfg, modality, split)) for split in ("train", "val")}
    train_set = InstructionDataset(
        read_instructions(instruct_path(cfg, modality, "train")),
        stores["train"],
        str(instruct_path(cfg, modality, "train")),
    )
    val_set = InstructionDataset(
        read_instructions(instruct_path(cfg, modality, "val")),
        stores["val"],
        str(instruct_path(cfg, modality, "val")),
    )
    sampler = MixtureSampler(train_set, tc.mix, cfg.seed, rank, world)

    torch.manual_seed(int(cfg.seed))
    setup = model_setup.build(cfg, modality, stores["train"].feature_dim, device)
    ds_config = build_ds_config(tc, world, on_accelerator)
    optimizer = torch.optim.AdamW(  # fused: one kernel for all tensors (CPU and CUDA), no DeepSpeed op build
        param_groups(setup.objective, tc.weight_decay),
        lr=tc.lr,
        betas=tuple(tc.betas),
        eps=tc.adam_eps,
        fused=True,
    )
    scheduler = LambdaLR(
        optimizer, lambda s: lr_factor(s, int(tc.warmup_steps), steps, float(tc.min_lr_ratio))
    )
    engine, _, _, _ = deepspeed.initialize(
        model=setup.objective, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    trainable = sum(
        getattr(p, "ds_numel", p.numel()) for p in setup.projection.parameters() if p.requires_grad
    )
    frozen = sum(p.numel() for p in setup.model.parameters() if not p.requires_grad)

    last_loss = float("nan")
    expect = {
        "world_size": world,
        "zero_stage": int(tc.zero_stage),
        "modality": modality,
        "recipe": checkpointing.recipe_hash(cfg),
        # the frozen inputs: a checkpoint trained on another encoder's features or another LLM is stale
        "features": str(stores["train"].index.get("key", "")),
        "llm": llm_fingerprint(cfg),
    }
    start = 0
    found = checkpointing.find_latest(ckpt_dir, expect)
    for message in found.skipped:
        if rank == 0:
            log.warning(message)
            emit({"event": "skipped_checkpoint", "message": message})
    if found.tag is not None:
        load_path, client = engine.load_checkpoint(str(ckpt_dir), tag=found.tag, load_module_strict=True)
        if load_path is None:
            raise XibError(f"{ckpt_dir / found.tag}: DeepSpeed could not load this checkpoint")
        start = int(client.get("step", found.step))
        last_loss = float(client.get("loss", float("nan")))
        tracker.history = client.get("history", {}) if rank == 0 else {}
        if rank == 0:
            emit({"event": "resumed", "tag": found.tag, "step": start})
    if rank == 0:
        emit(
            {
                "event": "start",
                "step": start,
                "steps": steps,
                "trainable": trainable,
                "frozen": frozen,
                "world_size": world,
                "zero_stage": int(tc.zero_stage),
                "modality": modality,
            }
        )

    def batch_of(dataset: InstructionDataset, indices: list[int]) -> Any:
        return setup.collate([dataset[i] for i in indices])

    def evaluate(step: int) -> None:
        engine.eval()
        total = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for indices in eval_indices(
                len(val_set), int(tc.eval_batches), int(tc.micro_batch_size), rank, world
            ):
                out = engine(batch_of(val_set, indices))
                total += torch.tensor(
                    [float(out["loss"].detach()) * len(indices), len(indices)], dtype=torch.float64
                )
            if dist.is_initialized():
                dist.all_reduce(total)
            samples = setup.generate([val_set[i] for i in range(min(int(tc.eval_samples), len(val_set)))])
        engine.train()
        val_loss = float(total[0] / max(total[1], 1))
        if rank == 0:
            tracker.metrics(step, {"val/loss": val_loss})
            tracker.text(json.dumps(samples, indent=1), f"samples/step{step:08d}.json")
            emit({"event": "eval", "step": step, "val_loss": val_loss, "samples": samples})

    engine.train()
    tokens_window, samples_window, t_window = 0.0, 0, time.perf_counter()
    loss_sum = torch.zeros(3, dtype=torch.float64)  # loss, lm, anchor over the log window
    steps_in_window = 0
    for step in range(start, steps):
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        step_stats = torch.zeros(4, dtype=torch.float64)  # loss, lm, anchor, tokens
        lr = float(engine.get_lr()[0])  # the rate this step trains with
        for micro in range(int(tc.grad_accum)):
            batch = batch_of(train_set, sampler.indices(step, micro, int(tc.micro_batch_size)))
            out = engine(batch)
            engine.backward(out["loss"])
            engine.step()
            step_stats += torch.tensor(
                [
                    float(out["loss"].detach()),
                    float(out.get("lm_loss", out["loss"])),
                    float(out.get("anchor_loss", 0.0)),
                    float(out.get("tokens", 0)),
                ],
                dtype=torch.float64,
            )
        if dist.is_initialized():
            dist.all_reduce(step_stats)
        step_stats[:3] /= world * int(tc.grad_accum)
        last_loss = float(step_stats[0])
        loss_sum += step_stats[:3]
        steps_in_window += 1
        tokens_window += float(step_stats[3])
        samples_window += int(tc.micro_batch_size) * int(tc.grad_accum) * world
        done = step + 1
        if done % int(tc.log_every) == 0 or done == steps:
            elapsed = max(time.perf_counter() - t_window, 1e-9)
            mean = loss_sum / steps_in_window
            metrics = {
                "train/loss": float(mean[0]),
                "train/lm_loss": float(mean[1]),
                "train/lr": lr,
                "train/samples_per_s": samples_window / elapsed,
                "train/tokens_per_s": tokens_window / elapsed,
            }
            if setup.anchor_enabled:
                metrics["train/anchor_loss"] = float(mean[2])
            if rank == 0:
                tracker.metrics(done, metrics)
                emit({"event": "step", "step": done, "steps": steps, "loss": last_loss, **metrics})
            loss_sum.zero_()
            steps_in_window, tokens_window, samples_window, t_window = 0, 0.0, 0, time.perf_counter()
        if int(tc.eval_every) > 0 and (done % int(tc.eval_every) == 0 or done == steps):
            evaluate(done)
        if done % int(tc.checkpoint_every) == 0 or done == steps:
            checkpointing.save(
                engine,
                ckpt_dir,
                done,
                expect,
                rank,
                client_state={"history": tracker.history, "loss": last_loss},
            )
            if rank == 0:
                checkpointing.prune(ckpt_dir, int(tc.keep_checkpoints), expect)
                emit({"event": "checkpoint", "step": done, "tag": checkpointing.tag_for(done)})

    memory = memory_report(engine, rank, world)
    if rank == 0:
        tracker.metrics(steps, {f"memory/rank{r}_{k}": v for r, m in enumerate(memory) for k, v in m.items()})
        emit({"event": "memory", "ranks": memory})

    # export: the projection alone, consolidated from the ZeRO partitions
    meta = {
        "modality": modality,
        "steps": steps,
        "final_loss": last_loss,
        "zero_stage": int(tc.zero_stage),
        "world_size": world,
        "encoder_fingerprint": stores["train"].index.get("encoder_fingerprint", ""),
        "anchor": bool(setup.anchor_enabled),
        "anchor_weight": setup.objective.anchor_weight,
        "mlflow_run_id": tracker.run_id,
    }
    exported = checkpointing.export_projection(setup, out_dir, meta, int(tc.zero_stage), rank)
    if rank == 0:
        curve = plot_curves(tracker.history, out_dir / "training_curve.png", f"align {modality}")
        if curve is not None:
            tracker.artifact(curve, "plots")
        for path in exported:
            tracker.artifact(path, "projection")
        tracker.metrics(steps, {"final/loss": last_loss})
        emit({"event": "done", "step": steps, "loss": last_loss, "projection": str(exported[0])})
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except XibError as err:
        print(f"xib align: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
