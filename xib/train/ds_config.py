"""The DeepSpeed JSON config, generated from the Hydra train config with concrete values (no "auto")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xib.train.config import TrainConfig

from xib.train.config import DTYPES, ZERO_STAGES


def use_bf16(train_cfg: TrainConfig, on_accelerator: bool) -> bool:
    """bf16 only where an accelerator runs it; on CPU training stays fp32 whatever the config says."""
    if train_cfg.dtype not in DTYPES:
        raise ValueError(f"train.dtype={train_cfg.dtype!r}: must be one of {', '.join(DTYPES)}")
    return train_cfg.dtype == "bf16" and on_accelerator


def build_ds_config(train_cfg: TrainConfig, world_size: int, on_accelerator: bool = False) -> dict[str, Any]:
    """DeepSpeed config for `deepspeed.initialize(config=...)`.

    The optimizer and LR schedule are torch objects passed to `deepspeed.initialize` (a torch AdamW
    avoids compiling FusedAdam), so the JSON carries no "optimizer"/"scheduler" section.
    """
    stage = train_cfg.zero_stage
    if stage not in ZERO_STAGES:
        raise ValueError(f"train.zero_stage={stage}: must be one of {ZERO_STAGES}")
    if world_size < 1 or train_cfg.micro_batch_size < 1 or train_cfg.grad_accum < 1:
        raise ValueError(
            f"world_size={world_size}, train.micro_batch_size={train_cfg.micro_batch_size}, "
            f"train.grad_accum={train_cfg.grad_accum}: all must be >= 1"
        )
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 1:
        zero.update(
            {
                "contiguous_gradients": True,
                "overlap_comm": False,
                "reduce_scatter": True,
                "reduce_bucket_size": 50_000_000,
                "allgather_bucket_size": 50_000_000,
            }
        )
    if stage == 3:
        zero.update(
            {
                "stage3_param_persistence_threshold": 0,
                "stage3_max_live_parameters": 100_000_000,
                "stage3_prefetch_bucket_size": 10_000_000,
                # the export gathers the projection itself (GatheredParameters); no 16-bit copy on save
                "stage3_gather_16bit_weights_on_model_save": False,
            }
        )
    bf16 = use_bf16(train_cfg, on_accelerator)
    return {
        "train_batch_size": int(train_cfg.micro_batch_size * train_cfg.grad_accum * world_size),
        "train_micro_batch_size_per_gpu": train_cfg.micro_batch_size,
        "gradient_accumulation_steps": train_cfg.grad_accum,
        "gradient_clipping": train_cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        # a torch.optim.AdamW is not on DeepSpeed's list of tested ZeRO optimizers
        "zero_allow_untested_optimizer": True,
        "steps_per_print": int(max(train_cfg.steps, 1) * 10),
        "wall_clock_breakdown": False,
    }
