"""Typed config of alignment training (conf/train/*.yaml).

Defaults equal the embedded default (conf/train/demo.yaml composed); tests/test_config.py keeps them so.
"""

from dataclasses import dataclass, field

ZERO_STAGES = (0, 1, 2, 3)
DTYPES = ("fp32", "bf16")  # training precision
MIXES = ("sqrt", "proportional", "uniform")  # how task datasets are mixed
LAUNCHERS = ("torchrun", "deepspeed", "none")
FEATURE_DTYPES = ("float32", "float16", "bfloat16")  # storage dtype of cached features


@dataclass
class AnchorConfig:
    """Caption anchoring: pull soft token i toward the frozen LLM's embedding of caption token i."""

    enabled: bool = True
    weight: float = 1.0
    weight_by_modality: dict[str, float] = field(default_factory=dict)  # overrides `weight` for a modality
    per_view: bool = True  # anchor every frame/segment's tokens to the caption, not only the first


@dataclass
class DeterminismConfig:
    """What `xib.train.determinism` pins so figures do not depend on the machine ("" = unpinned)."""

    algorithms: bool = True  # torch.use_deterministic_algorithms (warn-only)
    # with `algorithms`: torch's NaN fill of every new tensor (a guard against reading uninitialised
    # memory, not a source of determinism); off, it no longer doubles an alignment step's page faults
    fill_uninitialized_memory: bool = False
    cpu_capability: str = "avx2"  # ATEN_CPU_CAPABILITY: default | avx2 | avx512
    mkl_cbwr: str = "AVX2"  # MKL_CBWR: MKL's code path (COMPATIBLE, SSE4_2, AVX2, ...)
    onednn_max_cpu_isa: str = "AVX2"  # ONEDNN_MAX_CPU_ISA
    feature_threads: int = 2  # torch threads of `xib features` (the other stages set their own)


@dataclass
class TrainConfig:
    steps: int = 2000
    steps_by_modality: dict[str, int] = field(default_factory=dict)  # overrides `steps` for those named
    micro_batch_size: int = 16
    grad_accum: int = 1
    lr: float = 6e-4
    lr_by_modality: dict[str, float] = field(default_factory=dict)  # overrides `lr` for those named
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    zero_stage: int = 2
    dtype: str = "fp32"  # fp32 | bf16 (bf16 only where an accelerator is present; CPU always trains fp32)
    procs: int = 2
    launcher: str = "torchrun"  # torchrun | deepspeed | none
    backend: str = "gloo"  # gloo on CPU, nccl on GPU
    hostfile: str = ""  # deepspeed launcher: multi-node hostfile ("host slots=N" lines)
    master_port: int = 0  # 0 = pick a free port
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # complete checkpoints kept on disk (older ones are pruned)
    eval_every: int = 1000
    eval_batches: int = 4  # validation micro-batches per rank at each evaluation
    eval_samples: int = 3  # generated samples shown at each evaluation
    log_every: int = 10
    mix: str = "sqrt"  # how task datasets are mixed: sqrt | proportional | uniform
    threads_per_proc: int = 1
    feature_batch_size: int = 64  # encoder batch when building the feature cache
    feature_shard_items: int = 512  # items per safetensors feature shard
    feature_dtype: str = "float32"  # float32 | float16 | bfloat16 (storage dtype of cached features)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    determinism: DeterminismConfig = field(default_factory=DeterminismConfig)
