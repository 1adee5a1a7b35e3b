"""The paper's 7B configuration instantiates (on the meta device: no memory, no weights) with the
parameter counts its config implies: Vicuna-7B frozen, one Q-Former projection per modality trainable."""

from __future__ import annotations

import pytest
import torch

from xib.config import load_config
from xib.models.encoders import output_width
from xib.models.projectors import build_projection
from xib.models.testing import build_word_tokenizer
from xib.models.xinstructblip import XInstructBLIP

# lmsys/vicuna-7b-v1.1 config.json (a LLaMA-7B)
VICUNA_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)


def llama_params(c: dict) -> int:
    h, i, v, layers = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    kv = h * c["num_key_value_heads"] // c["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q,o + k,v + gate,up,down + 2 RMSNorms
    return 2 * v * h + layers * per_layer + h  # embeddings + untied lm_head + final norm


def qformer_projection_params(p, encoder_dim: int, llm_hidden: int) -> int:
    d, inter, vocab = p.qformer_hidden, p.qformer_intermediate, p.qformer_vocab_size
    positions = max(512, p.max_instruction_tokens)
    linear = lambda a, b: a * b + b  # noqa: E731
    ffn = linear(d, inter) + linear(inter, d) + 2 * d
    self_attention = 4 * linear(d, d) + 2 * d
    cross_attention = 2 * linear(d, d) + 2 * linear(encoder_dim, d) + 2 * d
    cross_layers = len(range(0, p.qformer_layers, p.cross_attention_frequency))
    qformer = vocab * d + positions * d + 2 * d + p.qformer_layers * (self_attention + 2 * ffn)
    qformer += cross_layers * cross_attention
    return qformer + p.num_query_tokens * d + 2 * encoder_dim + linear(d, llm_hidden)


@pytest.fixture(scope="module")
def cfg():
    return load_config(["model=vicuna7b"]).model


def test_vicuna7b_xinstructblip_on_meta(cfg):
    from transformers import LlamaConfig, LlamaForCausalLM

    assert cfg.projection.num_query_tokens == 32 and cfg.projection.qformer_hidden == 768
    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(**VICUNA_7B))
        # EVA ViT-g 1408, ULIP-2's 512-d global token, BEATs 768
        dims = {m: output_width(cfg.encoders[m]) for m in ("image", "pc", "audio", "video")}
        assert dims == {"image": 1408, "pc": 512, "audio": 768, "video": 1408}
        projections = {
            m: build_projection(cfg.projection, d, VICUNA_7B["hidden_size"]) for m, d in dims.items()
        }
    tokenizer = build_word_tokenizer(["a"])  # stands in for Vicuna's (only ids matter to the packer)
    model = XInstructBLIP(llm, tokenizer, projections, cfg)
    assert all(p.device.type == "meta" for p in model.parameters())

    counts = model.parameter_counts()
    assert counts["llm"] == llama_params(VICUNA_7B) == 6_738_415_616
    for modality, dim in dims.items():
        expected = qformer_projection_params(cfg.projection, dim, VICUNA_7B["hidden_size"])
        assert counts[f"projection/{modality}"] == expected, modality
    assert counts["frozen"] == counts["llm"]
    assert counts["trainable"] == sum(counts[f"projection/{m}"] for m in dims)
    # the paper's image Q-Former (BERT-base + cross-attention, 32 queries) is about 188M with its projection
    assert 180e6 < counts["projection/image"] < 200e6
    assert (
        counts["projection/audio"] < counts["projection/image"]
    )  # narrower encoder, smaller cross-attention
