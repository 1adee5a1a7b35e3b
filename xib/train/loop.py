"""Alignment training in named steps: `setup` -> `resume` -> `fit` (`train_step`, `validate`,
`save`) -> `finish`, run by every rank.

`setup` builds one rank's `Job` (data, model, tracker, the checkpoint's compatibility record) and
the DeepSpeed engine; every later step takes the engine as an argument, so each can be driven (and
tested) on its own. Rank 0 alone prints progress (`@@xib {...}` lines) and logs to MLflow.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.config import for_modality
from xib.errors import XibError
from xib.schedule import lr_factor as lr_factor  # the one schedule (re-exported for the trainer's tests)

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger("xib.train")

PROGRESS_PREFIX = "@@xib "  # rank 0's machine-readable progress lines, read by the launcher


def emit(event: dict[str, Any]) -> None:
    # one write: print() writes the text and the newline separately, and another rank's log line
    # (same pipe) can land between them and break the launcher's parsing of this one
    sys.stdout.write(PROGRESS_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def param_groups(module: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters only: weight decay on matrices, none on biases, norms and query tokens."""
    decay: list[Any] = []
    no_decay: list[Any] = []
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


def align_dir(cfg: XibConfig, modality: str) -> Path:
    return Path(cfg.paths.artifacts) / "align" / modality


@dataclass
class Job:
    """One rank's view of one alignment run: what `setup` built and the later steps read."""

    cfg: XibConfig
    modality: str
    steps: int
    rank: int
    world: int
    out_dir: Path
    model: Any  # model_setup.Setup: the objective DeepSpeed trains, the projection, collate/generate
    train_set: Any  # dataset.InstructionDataset
    val_set: Any
    sampler: Any  # dataset.MixtureSampler
    feature_index: dict[str, Any]  # the train feature cache's index.json
    tracker: Any  # tracking.RankZeroLogger
    expect: dict[str, Any] = field(default_factory=dict)  # what a resumable checkpoint must match

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "ds"

    def batch(self, dataset: Any, indices: list[int]) -> Any:
        return self.model.collate([dataset[i] for i in indices])


def setup(cfg: XibConfig, rank: int, world: int, local_rank: int) -> tuple[Job, Any]:
    """Data, model, optimizer and the DeepSpeed engine for `cfg.modality.name`; returns (job, engine)."""
    import torch

    from xib.train import checkpointing, model_setup
    from xib.train.dataset import InstructionDataset, MixtureSampler, instruct_path, read_instructions
    from xib.train.features import FeatureStore, cache_dir
    from xib.train.tracking import RankZeroLogger, llm_fingerprint

    modality, tc = cfg.modality.name, cfg.train
    on_accelerator = torch.cuda.is_available() and tc.backend == "nccl"
    device = torch.device(f"cuda:{local_rank}" if on_accelerator else "cpu")
    if on_accelerator:
        torch.cuda.set_device(device)
    tracker = RankZeroLogger(cfg, rank)
    stores = {split: FeatureStore(cache_dir(cfg, modality, split)) for split in ("train", "val")}
    datasets = {
        split: InstructionDataset(
            read_instructions(instruct_path(cfg, modality, split)),
            stores[split],
            str(instruct_path(cfg, modality, split)),
        )
        for split in ("train", "val")
    }
    sampler = MixtureSampler(datasets["train"], tc.mix, cfg.seed, rank, world)

    torch.manual_seed(cfg.seed)  # the projection's initial weights
    built = model_setup.build(cfg, modality, stores["train"].feature_dim, device)
    steps = int(for_modality(tc, "steps", modality))
    lr = float(for_modality(tc, "lr", modality))
    engine = build_engine(built.objective, tc, world, steps, lr, on_accelerator)
    job = Job(
        cfg=cfg,
        modality=modality,
        steps=steps,
        rank=rank,
        world=world,
        out_dir=align_dir(cfg, modality),
        model=built,
        train_set=datasets["train"],
        val_set=datasets["val"],
        sampler=sampler,
        feature_index=dict(stores["train"].index),
        tracker=tracker,
    )
    job.expect = checkpointing.expectations(
        cfg, world, str(job.feature_index.get("key", "")), llm_fingerprint(cfg)
    )
    return job, engine


def build_engine(objective: Any, tc: Any, world: int, steps: int, lr: float, on_accelerator: bool) -> Any:
    """The DeepSpeed engine around `objective`, with a torch AdamW at peak rate `lr` and the
    warmup-cosine schedule."""
    import deepspeed
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    from xib.train.ds_config import build_ds_config

    optimizer = torch.optim.AdamW(  # fused: one kernel for all tensors (CPU and CUDA), no DeepSpeed op build
        param_groups(objective, tc.weight_decay),
        lr=lr,
        betas=tuple(tc.betas),
        eps=tc.adam_eps,
        fused=True,
    )
    scheduler = LambdaLR(
        optimizer, lambda s: lr_factor(s, int(tc.warmup_steps), steps, float(tc.min_lr_ratio))
    )
    engine, _, _, _ = deepspeed.initialize(
        model=objective,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=build_ds_config(tc, world, on_accelerator),
    )
    return engine


@dataclass
class Progress:
    """Where a run stands: the next step to train and the loss of the last one trained."""

    step: int = 0
    loss: float = float("nan")


def resume(job: Job, engine: Any) -> Progress:
    """Load the newest complete, compatible checkpoint into `engine` (if any) and report the start."""
    from xib.train import checkpointing

    progress = Progress()
    found = checkpointing.find_latest(job.ckpt_dir, job.expect)
    for message in found.skipped:
        if job.rank == 0:
            log.warning(message)
            emit({"event": "skipped_checkpoint", "message": message})
    if found.tag is not None:
        client = checkpointing.load(engine, job.ckpt_dir, found.tag)
        progress = Progress(int(client.get("step", found.step)), float(client.get("loss", float("nan"))))
        job.tracker.history = client.get("history", {}) if job.rank == 0 else {}
        if job.rank == 0:
            emit({"event": "resumed", "tag": found.tag, "step": progress.step})
    if job.rank == 0:
        trainable = sum(
            getattr(p, "ds_numel", p.numel()) for p in job.model.projection.parameters() if p.requires_grad
        )
        frozen = sum(p.numel() for p in job.model.model.parameters() if not p.requires_grad)
        emit(
            {
                "event": "start",
                "step": progress.step,
                "steps": job.steps,
                "trainable": trainable,
                "frozen": frozen,
                "world_size": job.world,
                "zero_stage": int(job.cfg.train.zero_stage),
                "modality": job.modality,
            }
        )
    return progress


def train_step(job: Job, engine: Any, step: int) -> tuple[Any, float]:
    """One optimizer step (`grad_accum` micro-batches on every rank). Returns the step's mean
    (loss, lm_loss, anchor_loss) over ranks and micro-batches plus its summed token count, as one
    float64 tensor, and the learning rate it trained with."""
    import torch
    import torch.distributed as dist

    tc = job.cfg.train
    torch.manual_seed(step_seed(job.cfg.seed, step, job.rank))
    stats = torch.zeros(4, dtype=torch.float64)  # loss, lm, anchor, tokens
    lr = float(engine.get_lr()[0])  # the rate this step trains with
    for micro in range(int(tc.grad_accum)):
        out = engine(job.batch(job.train_set, job.sampler.indices(step, micro, int(tc.micro_batch_size))))
        engine.backward(out["loss"])
        engine.step()
        stats += torch.tensor(
            [
                float(out["loss"].detach()),
                float(out.get("lm_loss", out["loss"])),
                float(out.get("anchor_loss", 0.0)),
                float(out.get("tokens", 0)),
            ],
            dtype=torch.float64,
        )
    if dist.is_initialized():
        dist.all_reduce(stats)
    stats[:3] /= job.world * int(tc.grad_accum)
    return stats, lr


class LogWindow:
    """Training metrics averaged over the steps since the last log line, and the throughput."""

    def __init__(self) -> None:
        import torch

        self.loss_sum = torch.zeros(3, dtype=torch.float64)  # loss, lm, anchor
        self.reset()

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.steps, self.tokens, self.samples, self.started = 0, 0.0, 0, time.perf_counter()

    def add(self, stats: Any, samples: int) -> None:
        self.loss_sum += stats[:3]
        self.steps += 1
        self.tokens += float(stats[3])
        self.samples += samples

    def metrics(self, lr: float, anchor: bool) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        mean = self.loss_sum / self.steps
        metrics = {
            "train/loss": float(mean[0]),
            "train/lm_loss": float(mean[1]),
            "train/lr": lr,
            "train/samples_per_s": self.samples / elapsed,
            "train/tokens_per_s": self.tokens / elapsed,
        }
        if anchor:
            metrics["train/anchor_loss"] = float(mean[2])
        return metrics


def fit(job: Job, engine: Any, progress: Progress) -> Progress:
    """Train from `progress.step` to `job.steps`: log every `log_every`, validate every
    `eval_every`, checkpoint every `checkpoint_every` (and all three at the last step)."""
    tc = job.cfg.train
    engine.train()
    window = LogWindow()
    samples_per_step = int(tc.micro_batch_size) * int(tc.grad_accum) * job.world
    for step in range(progress.step, job.steps):
        stats, lr = train_step(job, engine, step)
        progress = Progress(step + 1, float(stats[0]))
        window.add(stats, samples_per_step)
        done, last = progress.step, progress.step == job.steps
        if done % int(tc.log_every) == 0 or last:
            metrics = window.metrics(lr, job.model.anchor_enabled)
            if job.rank == 0:
                job.tracker.metrics(done, metrics)
                emit({"event": "step", "step": done, "steps": job.steps, "loss": progress.loss, **metrics})
            window.reset()
        if int(tc.eval_every) > 0 and (done % int(tc.eval_every) == 0 or last):
            validate(job, engine, done)
        if done % int(tc.checkpoint_every) == 0 or last:
            save(job, engine, progress)
    return progress


def validate(job: Job, engine: Any, step: int) -> float:
    """Mean validation loss over a fixed slice of the val set (all ranks), plus a few generated
    samples; rank 0 logs both. Leaves the engine in training mode."""
    import torch
    import torch.distributed as dist

    from xib.train.dataset import eval_indices

    tc = job.cfg.train
    engine.eval()
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for indices in eval_indices(
            len(job.val_set), int(tc.eval_batches), int(tc.micro_batch_size), job.rank, job.world
        ):
            out = engine(job.batch(job.val_set, indices))
            total += torch.tensor(
                [float(out["loss"].detach()) * len(indices), len(indices)], dtype=torch.float64
            )
        if dist.is_initialized():
            dist.all_reduce(total)
        shown = range(min(int(tc.eval_samples), len(job.val_set)))
        samples = job.model.generate([job.val_set[i] for i in shown])
    engine.train()
    val_loss = float(total[0] / total[1].clamp(min=1))
    if job.rank == 0:
        job.tracker.metrics(step, {"val/loss": val_loss})
        job.tracker.text(json.dumps(samples, indent=1), f"samples/step{step:08d}.json")
        emit({"event": "eval", "step": step, "val_loss": val_loss, "samples": samples})
    return val_loss


def save(job: Job, engine: Any, progress: Progress) -> Path:
    """All ranks: a complete checkpoint of `progress.step` (rank 0 then prunes the old ones)."""
    from xib.train import checkpointing

    tag_dir = checkpointing.save(
        engine,
        job.ckpt_dir,
        progress.step,
        {**job.expect, "mlflow_run_id": job.tracker.run_id},
        job.rank,
        client_state={"history": job.tracker.history, "loss": progress.loss},
    )
    if job.rank == 0:
        checkpointing.prune(job.ckpt_dir, int(job.cfg.train.keep_checkpoints), job.expect)
        emit({"event": "checkpoint", "step": progress.step, "tag": tag_dir.name})
    return tag_dir


def finish(job: Job, engine: Any, progress: Progress) -> list[Path]:
    """All ranks: the memory report, then the projection alone, consolidated from the ZeRO
    partitions and exported; rank 0 logs the curves, the export and the final loss."""
    from xib.train import checkpointing
    from xib.train.tracking import plot_curves

    memory = memory_report(engine, job.rank, job.world)
    if job.rank == 0:
        job.tracker.metrics(
            job.steps, {f"memory/rank{r}_{k}": v for r, m in enumerate(memory) for k, v in m.items()}
        )
        emit({"event": "memory", "ranks": memory})
    zero_stage = int(job.cfg.train.zero_stage)
    meta = {
        "modality": job.modality,
        "steps": job.steps,
        "final_loss": progress.loss,
        "zero_stage": zero_stage,
        "world_size": job.world,
        "encoder_fingerprint": job.feature_index.get("encoder_fingerprint", ""),
        "anchor": bool(job.model.anchor_enabled),
        "anchor_weight": job.model.objective.anchor_weight,
        "mlflow_run_id": job.tracker.run_id,
    }
    exported = checkpointing.export_projection(job.model, job.out_dir, meta, zero_stage, job.rank)
    if job.rank == 0:
        curve = plot_curves(job.tracker.history, job.out_dir / "training_curve.png", f"align {job.modality}")
        if curve is not None:
            job.tracker.artifact(curve, "plots")
        for path in exported:
            job.tracker.artifact(path, "projection")
        job.tracker.metrics(job.steps, {"final/loss": progress.loss})
        emit({"event": "done", "step": job.steps, "loss": progress.loss, "projection": str(exported[0])})
    return exported


def memory_report(engine: Any, rank: int, world: int) -> list[dict[str, float]]:
    """Per rank: RSS after training and its peak (CPU), peak accelerator memory, and the training state this rank holds
    (the optimizer's parameters - ZeRO's flat fp32 partitions - and their Adam moments), in MB."""
    import resource

    import psutil
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
