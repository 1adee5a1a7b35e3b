"""Caption anchoring: make soft tokens read like text (DESIGN.md, "Making cross-modal reasoning emerge").

Soft token i is pulled toward the frozen LLM's input embedding of caption token i, for
i < min(number of soft tokens, caption length): a mean squared error normalised by the mean square
of the LLM's input embedding matrix (so the weight means the same for any LLM width or scale),
times `train.anchor.weight`. The trainer adds it to the LM loss only when `train.anchor.enabled`.
It uses the single-modality caption of the sample, so cross-modal evaluation stays zero-shot.
"""

from __future__ import annotations

import torch
from torch import nn


def caption_anchor_loss(
    soft_tokens: torch.Tensor,
    soft_mask: torch.Tensor,
    caption_ids: torch.Tensor,
    caption_mask: torch.Tensor,
    input_embeddings: nn.Embedding | torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """`weight * mean_i ||soft_i - emb(caption_i)||^2 / (H * mean(emb^2))` over the paired positions.

    soft_tokens `[B, S, H]` with `soft_mask [B, S]`; caption_ids / caption_mask `[B, C]` (right-padded);
    input_embeddings the frozen LLM's embedding (module or weight matrix `[V, H]`).
    """
    table = input_embeddings.weight if isinstance(input_embeddings, nn.Embedding) else input_embeddings
    table = table.detach()
    width = min(soft_tokens.shape[1], caption_ids.shape[1])
    soft = soft_tokens[:, :width].float()
    target = nn.functional.embedding(caption_ids[:, :width], table).float()
    paired = soft_mask[:, :width].bool() & caption_mask[:, :width].bool()
    if not bool(paired.any()):
        return soft_tokens.sum() * 0.0
    squared = (soft - target).pow(2).mean(dim=-1)  # [B, width]
    mse = squared[paired].mean()
    return float(weight) * mse / table.float().pow(2).mean().clamp(min=1e-12)
