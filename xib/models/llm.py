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
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    freeze(model)
    return model, tokenizer


def freeze(module: Any) -> Any:
    """No gradients, eval mode (dropout off): a frozen part of X-InstructBLIP."""
    module.requires_grad_(False)
    module.eval()
    return module
