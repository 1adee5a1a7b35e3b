"""Typed config of alignment training (conf/train/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class AnchorConfig:
    """Caption anchoring: pull soft token i toward the frozen LLM's embedding of caption token i."""

    enabled: bool = False
    weight: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 300
    micro_batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    zero_stage: int = 2
    dtype: str = "fp32"  # fp32 | bf16
    procs: int = 2
    launcher: str = "torchrun"  # torchrun | deepspeed | none
    backend: str = "gloo"  # gloo on CPU, nccl on GPU
    hostfile: str = ""
    checkpoint_every: int = 100
    eval_every: int = 100
    log_every: int = 10
    mix: str = "sqrt"  # how datasets are mixed: sqrt | proportional
    threads_per_proc: int = 1
    feature_batch_size: int = 64
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
