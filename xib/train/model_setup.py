"""The model alignment trains, assembled from xib.models: frozen LLM + one modality's projection.

`build()` returns what the worker needs: the module handed to DeepSpeed (`AlignmentObjective`,
whose forward is the training loss), the projection (the only trainable part, exported at the end),
and the collate/generate functions that turn dataset records into model inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xib.config import for_modality
from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)


class AlignmentObjective(nn.Module):
    frozen_model: Any  # the XInstructBLIP, set with object.__setattr__ below (not a submodule)

    """forward(batch) -> {"loss", "lm_loss", "anchor_loss"?, "tokens"}: LM loss, plus anchoring if enabled.

    Only the projection is a registered submodule, so DeepSpeed sees (partitions, checkpoints,
    optimizes) nothing else; the frozen LLM is held as a plain attribute, replicated on every rank
    and never converted, partitioned or saved by the engine.
    """

    def __init__(
        self, model: Any, projection: nn.Module, anchor_weight: float | None, anchor_per_view: bool = False
    ) -> None:
        super().__init__()
        self.projection = projection
        object.__setattr__(self, "frozen_model", model)  # not a submodule: invisible to DeepSpeed
        self.anchor_weight = anchor_weight
        self.anchor_per_view = anchor_per_view

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        model = self.frozen_model
        batch = batch.to(model.device)
        output = model(batch)
        result = {
            "lm_loss": output.loss.detach(),
            "tokens": batch.attention_mask.sum().detach(),
        }
        loss = output.loss
        if self.anchor_weight is not None:
            anchor = model.anchor_loss(batch, output, self.anchor_weight, per_view=self.anchor_per_view)
            loss = loss + anchor
            result["anchor_loss"] = anchor.detach()
        result["loss"] = loss
        return result


@dataclass
class Setup:
    objective: AlignmentObjective
    model: Any  # XInstructBLIP
    projection: nn.Module
    modality: str
    anchor_enabled: bool
    collate: Callable[[list[dict[str, Any]]], Any]
    generate: Callable[[list[dict[str, Any]]], list[dict[str, str]]]
    init_report: dict[str, Any]


def examples(modality: str, records: list[dict[str, Any]]) -> list[tuple[list[Any], str]]:
    """(prompt, answer) pairs: the item's cached features in the shared instruction layout."""
    from xib.models.xinstructblip import MediaInput, fill_slots
    from xib.prompts import instruction_prompt

    out = []
    for record in records:
        media = MediaInput(modality, record["features"], record["mask"], instruction=record["instruction"])
        out.append(
            (fill_slots(instruction_prompt(modality, record["instruction"]), [media]), record["answer"])
        )
    return out


def build(cfg: XibConfig, modality: str, feature_dim: int, device: torch.device) -> Setup:
    from xib.models.checkpoint import load_qformer_tokenizer, new_projection, resolve_qformer_vocab
    from xib.models.llm import load_llm
    from xib.models.xinstructblip import XInstructBLIP

    llm, tokenizer = load_llm(cfg.model.llm)
    qformer_tokenizer = load_qformer_tokenizer(cfg.model.projection)
    hidden = int(llm.get_input_embeddings().weight.shape[1])
    init_dir = None
    if cfg.modality.init_from:  # the paper: video starts from the trained image projection
        init_dir = Path(cfg.paths.artifacts) / "align" / cfg.modality.init_from
        if not (init_dir / "projection.json").is_file():
            raise XibError(
                f"modality.init_from={cfg.modality.init_from!r}: no projection in {init_dir} "
                f"(run `xib align modality={cfg.modality.init_from}` first)"
            )
    projection, report = new_projection(
        cfg.model,
        modality,
        feature_dim,
        hidden,
        resolve_qformer_vocab(cfg.model.projection, tokenizer, qformer_tokenizer),
        init_dir,
    )
    log.info("%s projection initialised: %s", modality, report)
    model = XInstructBLIP(llm, tokenizer, {modality: projection}, cfg.model, qformer_tokenizer).to(device)
    for name, param in model.named_parameters():
        if param.requires_grad and not name.startswith("projections."):
            raise RuntimeError(f"{name} would train, but only the projection may")
    anchor_enabled = cfg.train.anchor.enabled
    objective = AlignmentObjective(
        model,
        projection,
        float(for_modality(cfg.train.anchor, "weight", modality)) if anchor_enabled else None,
        cfg.train.anchor.per_view,
    )

    def collate(records: list[dict[str, Any]]) -> Any:
        captions = [r.get("caption", "") for r in records] if anchor_enabled else None
        return model.collate(examples(modality, records), captions=captions)

    def generate(records: list[dict[str, Any]]) -> list[dict[str, str]]:
        if not records:
            return []
        prompts = [prompt for prompt, _ in examples(modality, records)]
        answers = model.generate(prompts, batch_size=len(prompts))
        return [
            {"item_id": r["item_id"], "instruction": r["instruction"], "answer": r["answer"], "generated": a}
            for r, a in zip(records, answers)
        ]

    return Setup(objective, model, projection, modality, anchor_enabled, collate, generate, report)
