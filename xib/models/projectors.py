"""Trainable projections from a frozen encoder's tokens to soft tokens in the frozen LLM's input space.

Chosen by name (`build_projection`), like LLaVA's projector builder:
- `qformer`: the instruction-aware Q-Former of BLIP-2/InstructBLIP (transformers'
  `InstructBlipQFormerModel`, reused as is): LayerNorm on the encoder tokens, K learned query tokens
  that cross-attend to them while self-attending with the instruction's tokens, then
  Linear(Q-Former width -> LLM width).
- `linear`: the paper's linear alternative: LayerNorm, mean-pool the encoder tokens, Linear to
  K x d, Linear(d -> LLM width). Not instruction-aware.

Every projection maps `features [M, N, D]` (M = inputs x views), `mask [M, N]` (True = real token)
and, for instruction-aware kinds, the instruction ids `[M, T]` to soft tokens `[M, K, H]`.
Parameter names follow the HF InstructBLIP layout (`qformer.*`, `query_tokens`,
`language_projection.*`), so a BLIP-2/InstructBLIP checkpoint maps onto them by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xib.errors import XibError
from xib.models.config import ProjectionConfig


def as_projection_config(cfg: Any) -> ProjectionConfig:
    """A `ProjectionConfig` from the dataclass itself, an OmegaConf node or a plain mapping."""
    # Any: a converter; checkpoints hand it the saved plain dict, tests an OmegaConf node, code the dataclass.
    if isinstance(cfg, ProjectionConfig):
        return cfg
    if is_dataclass(cfg):
        cfg = asdict(cfg)  # type: ignore[arg-type]
    elif not isinstance(cfg, Mapping):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    known = {f.name for f in fields(ProjectionConfig)}
    unknown = set(cfg) - known
    if unknown:
        raise XibError(f"projection config: unknown keys {sorted(unknown)}")
    values = dict(cfg)
    if "init_skip_cross_attention" in values:
        values["init_skip_cross_attention"] = list(values["init_skip_cross_attention"])
    if "num_query_tokens_by_modality" in values:
        values["num_query_tokens_by_modality"] = {
            str(k): int(v) for k, v in dict(values["num_query_tokens_by_modality"]).items()
        }
    return ProjectionConfig(**values)


class Projection(nn.Module):
    """Base class: `forward(features, mask, instr_ids, instr_mask) -> [M, K, H]`."""

    kind: str = ""
    instruction_aware: bool = False

    def __init__(self, config: ProjectionConfig, encoder_dim: int, llm_hidden: int) -> None:
        super().__init__()
        self.config = config
        self.encoder_dim = encoder_dim
        self.llm_hidden = llm_hidden
        self.num_tokens = config.num_query_tokens

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild this projection exactly."""
        return {
            "kind": self.kind,
            "config": asdict(self.config),
            "encoder_dim": self.encoder_dim,
            "llm_hidden": self.llm_hidden,
        }

    def weight_layout(self) -> dict[str, Any]:
        """`describe()` without the settings that do not shape the weights (how views are fed)."""
        layout = self.describe()
        layout["config"] = {k: v for k, v in layout["config"].items() if k != "join_views"}
        return layout


class QFormerProjection(Projection):
    kind = "qformer"
    instruction_aware = True

    def __init__(self, config: ProjectionConfig, encoder_dim: int, llm_hidden: int) -> None:
        super().__init__(config, encoder_dim, llm_hidden)
        from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

        if config.qformer_vocab_size <= 0:
            raise ValueError(
                "projection.qformer_vocab_size must be resolved (> 0) before building a Q-Former"
            )
        self.qformer_config = InstructBlipQFormerConfig(
            vocab_size=config.qformer_vocab_size,
            hidden_size=config.qformer_hidden,
            num_hidden_layers=config.qformer_layers,
            num_attention_heads=config.qformer_heads,
            intermediate_size=config.qformer_intermediate,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=max(512, config.max_instruction_tokens),
            cross_attention_frequency=config.cross_attention_frequency,
            encoder_hidden_size=encoder_dim,
        )
        # the modality LayerNorm after the frozen encoder (LAVIS `ln_vision`, HF `post_layernorm`)
        self.layernorm = nn.LayerNorm(encoder_dim)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_hidden))
        nn.init.normal_(self.query_tokens, std=self.qformer_config.initializer_range)
        self.qformer = InstructBlipQFormerModel(self.qformer_config)
        self.language_projection = nn.Linear(config.qformer_hidden, llm_hidden)

    def forward(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        instr_ids: torch.Tensor | None = None,
        instr_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dtype = self.layernorm.weight.dtype
        encoder_states = self.layernorm(features.to(dtype))
        batch = encoder_states.shape[0]
        encoder_mask = None if mask is None else mask.to(torch.long)
        queries = self.query_tokens.expand(batch, -1, -1)
        attention_mask = None
        if instr_ids is not None:
            if instr_mask is None:
                instr_mask = torch.ones_like(instr_ids)
            query_mask = torch.ones(queries.shape[:2], dtype=torch.long, device=queries.device)
            attention_mask = torch.cat([query_mask, instr_mask.to(torch.long)], dim=1)
        out = self.qformer(
            input_ids=instr_ids,
            attention_mask=attention_mask,
            query_embeds=queries,
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask,
            return_dict=True,
        )
        return self.language_projection(out.last_hidden_state[:, : self.num_tokens, :])


class LinearProjection(Projection):
    kind = "linear"
    instruction_aware = False

    def __init__(self, config: ProjectionConfig, encoder_dim: int, llm_hidden: int) -> None:
        super().__init__(config, encoder_dim, llm_hidden)
        self.layernorm = nn.LayerNorm(encoder_dim)
        self.to_tokens = nn.Linear(encoder_dim, config.num_query_tokens * config.linear_hidden)
        self.language_projection = nn.Linear(config.linear_hidden, llm_hidden)

    def forward(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        instr_ids: torch.Tensor | None = None,
        instr_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.layernorm(features.to(self.layernorm.weight.dtype))
        if mask is None:
            pooled = x.mean(dim=1)
        else:
            weights = mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        tokens = self.to_tokens(pooled).view(x.shape[0], self.num_tokens, self.config.linear_hidden)
        return self.language_projection(tokens)


PROJECTIONS: dict[str, Callable[[ProjectionConfig, int, int], Projection]] = {
    "qformer": QFormerProjection,
    "linear": LinearProjection,
}


def build_projection(
    proj_cfg: ProjectionConfig, encoder_dim: int, llm_hidden: int, *, qformer_vocab_size: int | None = None
) -> Projection:
    """The projection named by `proj_cfg.kind`, randomly initialised.

    `qformer_vocab_size` resolves `projection.qformer_vocab_size: 0` (= the size of the tokenizer that
    feeds the Q-Former); the resolved value is what a checkpoint records.
    """
    config = as_projection_config(proj_cfg)
    if config.kind not in PROJECTIONS:
        raise ValueError(f"projection.kind={config.kind!r}: expected one of {sorted(PROJECTIONS)}")
    if config.kind == "qformer" and config.qformer_vocab_size <= 0:
        if not qformer_vocab_size:
            raise ValueError(
                "projection.qformer_vocab_size is 0 (= the tokenizer's size): pass qformer_vocab_size"
            )
        config = ProjectionConfig(**{**asdict(config), "qformer_vocab_size": int(qformer_vocab_size)})
    return PROJECTIONS[config.kind](config, encoder_dim, llm_hidden)


# --------------------------------------------------------------------------------------------------
# Initialisation from a BLIP-2 / InstructBLIP checkpoint in the HF layout
# --------------------------------------------------------------------------------------------------

_HF_PREFIXES = ("qformer.", "query_tokens", "language_projection.", "vision_model.post_layernorm.")


def _read_hf_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The Q-Former-side tensors of a `save_pretrained` directory (single or sharded safetensors)."""
    from safetensors import safe_open

    if path.is_file():
        files = [path]
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    elif (path / "model.safetensors.index.json").is_file():
        index = json.loads((path / "model.safetensors.index.json").read_text())
        wanted = {f for k, f in index["weight_map"].items() if k.startswith(_HF_PREFIXES)}
        files = [path / f for f in sorted(wanted)]
    else:
        raise XibError(f"{path}: no model.safetensors or model.safetensors.index.json (init_from)")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(_HF_PREFIXES):
                    tensors[key] = handle.get_tensor(key)
    if not any(k.startswith("qformer.") for k in tensors):
        raise XibError(f"{path}: no `qformer.*` tensors: not a BLIP-2/InstructBLIP checkpoint")
    return tensors


def load_pretrained_qformer(
    projection: Projection, path: str | Path, *, skip_cross_attention: bool
) -> dict[str, list[str]]:
    """Copy a BLIP-2/InstructBLIP Q-Former (HF layout) into `projection`; returns what was done.

    The paper's rule: image and video load everything; for 3D and audio (`skip_cross_attention`) the
    cross-attention blocks are not loaded (the encoder width differs) and train from scratch, as
    does the encoder LayerNorm. Word embeddings load only when the vocabularies agree (a Q-Former fed
    with the LLM tokenizer's ids keeps its own). Any other shape disagreement is an error.
    """
    if not isinstance(projection, QFormerProjection):
        raise XibError(f"init_from {path}: only a qformer projection can load a Q-Former checkpoint")
    tensors = _read_hf_tensors(Path(path))
    own = projection.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "skipped_rule": [], "skipped_vocab": [], "missing": []}
    to_load: dict[str, torch.Tensor] = {}
    mismatched = []
    for key, value in tensors.items():
        target = key.replace("vision_model.post_layernorm.", "layernorm.")
        if skip_cross_attention and (".crossattention." in key or target.startswith("layernorm.")):
            report["skipped_rule"].append(key)
            continue
        if target not in own:
            continue  # e.g. BLIP-2's ITM/ITC heads
        if own[target].shape != value.shape:
            if target.endswith("embeddings.word_embeddings.weight"):
                report["skipped_vocab"].append(key)
                continue
            if target.startswith("layernorm."):
                report["skipped_rule"].append(key)
                continue
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[target].shape)}")
            continue
        to_load[target] = value
    if mismatched:
        raise XibError(f"init_from {path}: shapes disagree with conf/model: {'; '.join(mismatched[:5])}")
    projection.load_state_dict(to_load, strict=False)
    report["loaded"] = sorted(to_load)
    report["missing"] = sorted(k for k in own if k not in to_load)
    return report
