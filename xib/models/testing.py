"""Tiny real models for tests and benchmarks: a LlamaForCausalLM and a word-level fast tokenizer,
saved with `save_pretrained` so they load through the same code (`xib.models.llm.load_llm`) as any LLM.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xib.models.config import ModelConfig

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")

DEFAULT_WORDS = (
    "image: 3d: audio: video: question: answer: a an the is it of and or what which this that "
    "red green blue yellow black white small large big round square cube sphere cone dog cat bird car "
    "barks meows sings runs flies swims sits describe short description caption first second "
    "you are given two inputs select exactly one by reference to its relative position "
    "( ) best answers . , ? colour color shape size sound motion alive yes no"
).split()


def build_word_tokenizer(words: Iterable[str]) -> Any:
    """A whitespace word-level fast tokenizer; BOS is added at the start, EOS/pad are special tokens."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for word in (*SPECIALS, *words):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def save_tiny_llm(
    directory: str | Path,
    words: Iterable[str] = DEFAULT_WORDS,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate_size: int = 64,
    max_positions: int = 512,
    seed: int = 0,
    kv_heads: int | None = None,
    tie_word_embeddings: bool = False,
) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer; returns the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_word_tokenizer(words)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or max(1, heads // 2),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def demo_model_cfg(llm_dir: str | Path, **projection_overrides: Any) -> ModelConfig:
    """The composed demo config's `model` section, its LLM path pointing at `llm_dir`."""
    from xib.config import load_config

    cfg = load_config(["model=demo"]).model
    cfg.llm.path = str(llm_dir)
    for key, value in projection_overrides.items():
        if not hasattr(cfg.projection, key):
            raise TypeError(f"ProjectionConfig has no field {key!r}")
        setattr(cfg.projection, key, value)
    return cfg


def tiny_model(
    llm_dir: str | Path, encoder_dims: dict[str, int], seed: int = 0, **projection_overrides: Any
) -> Any:
    """An XInstructBLIP over the tiny LLM in `llm_dir`, one fresh projection per modality."""
    import torch

    from xib.models.checkpoint import new_projection, resolve_qformer_vocab
    from xib.models.llm import load_llm
    from xib.models.xinstructblip import XInstructBLIP

    cfg = demo_model_cfg(llm_dir, **projection_overrides)
    llm, tokenizer = load_llm(cfg.llm)
    hidden = llm.get_input_embeddings().weight.shape[1]
    torch.manual_seed(seed)
    vocab = resolve_qformer_vocab(cfg.projection, tokenizer)
    projections = {m: new_projection(cfg, m, d, hidden, vocab)[0] for m, d in encoder_dims.items()}
    return XInstructBLIP(llm, tokenizer, projections, cfg)
