"""The frozen LLM: a causal LM and its tokenizer from a local `save_pretrained` directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.models.config import LLMConfig

from xib.models.config import LLM_DTYPES as DTYPES


def load_llm(llm_cfg: LLMConfig) -> tuple[Any, Any]:
    """(model, tokenizer) from `llm_cfg.path`, offline; every weight frozen, eval mode.

    The tokenizer gets a pad token (its EOS, or UNK) when it has none, because batches are padded.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(llm_cfg.path)
    if not (path / "config.json").is_file():
        raise XibError(f"{path}: no LLM here (expected a save_pretrained directory; run `xib bootstrap`)")
    if llm_cfg.dtype not in DTYPES:
        raise ValueError(f"model.llm.dtype={llm_cfg.dtype!r}: expected one of {DTYPES}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, dtype=getattr(torch, llm_cfg.dtype)
    )
    special = dict(getattr(llm_cfg, "special_tokens", None) or {})
    if special:
        apply_special_tokens(model, tokenizer, special)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    freeze(model)
    return model, tokenizer


def apply_special_tokens(model: Any, tokenizer: Any, special: dict[str, str]) -> None:
    """Set special tokens as the reference sets Vicuna's (`add_special_tokens` one at a time, in
    order); tokens new to the vocabulary get zero embedding and output rows (deterministic, and
    never read: the pad token is masked everywhere)."""
    import torch

    before = model.get_input_embeddings().weight.shape[0]
    probe = tokenizer("a")["input_ids"]
    starts_with_bos = (
        bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id
    )
    for role, token in special.items():
        tokenizer.add_special_tokens({role: token})
    if "bos_token" in special and starts_with_bos and hasattr(tokenizer, "update_post_processor"):
        # the slow Llama tokenizer LAVIS used puts whatever bos_token is at the start; a fast one
        # keeps its old template unless told
        tokenizer.add_bos_token = True
        tokenizer.update_post_processor()
    if len(tokenizer) > before:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            model.get_input_embeddings().weight[before:] = 0
            output = model.get_output_embeddings()
            if output is not None and output.weight.shape[0] > before:
                output.weight[before:] = 0


def freeze(module: Any) -> Any:
    """No gradients, eval mode (dropout off): a frozen part of X-InstructBLIP."""
    module.requires_grad_(False)
    module.eval()
    return module
