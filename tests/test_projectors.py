"""Projections: shapes, masks, instruction-awareness, and equality with transformers' InstructBLIP."""

from __future__ import annotations

import pytest
import torch

from xib.errors import XibError
from xib.models.config import ProjectionConfig
from xib.models.projectors import build_projection, load_pretrained_qformer

TINY = dict(
    num_query_tokens=4,
    qformer_hidden=32,
    qformer_layers=2,
    qformer_heads=4,
    qformer_intermediate=64,
    cross_attention_frequency=1,
    linear_hidden=16,
    dropout=0.0,
)


def make(kind: str, encoder_dim: int = 24, llm_hidden: int = 40, **kw):
    torch.manual_seed(0)
    cfg = ProjectionConfig(kind=kind, **{**TINY, **kw})
    return build_projection(cfg, encoder_dim, llm_hidden, qformer_vocab_size=50).eval()


@pytest.mark.parametrize("kind", ["qformer", "linear"])
@pytest.mark.parametrize("tokens,dim", [(17, 24), (1, 24), (9, 24)])  # image-like, one global pc token, audio
def test_shapes(kind, tokens, dim):
    proj = make(kind, encoder_dim=dim)
    features = torch.randn(6, tokens, dim)
    out = proj(
        features, torch.ones(6, tokens, dtype=torch.bool), torch.randint(0, 50, (6, 5)), torch.ones(6, 5)
    )
    assert out.shape == (6, 4, 40)
    assert proj.num_tokens == 4 and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["qformer", "linear"])
def test_masked_encoder_tokens_are_ignored(kind):
    proj = make(kind)
    features = torch.randn(3, 10, 24)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[:, 7:] = False
    ids = torch.randint(0, 50, (3, 5))
    base = proj(features, mask, ids, torch.ones_like(ids))
    garbage = features.clone()
    garbage[:, 7:] = 1e3 * torch.randn(3, 3, 24)
    assert torch.allclose(base, proj(garbage, mask, ids, torch.ones_like(ids)), atol=1e-5)
    # and the unmasked tokens do matter
    changed = features.clone()
    changed[:, 0] = torch.randn(3, 24)
    assert not torch.allclose(base, proj(changed, mask, ids, torch.ones_like(ids)), atol=1e-3)


def test_qformer_reads_the_instruction_linear_does_not():
    features = torch.randn(2, 10, 24)
    a, b = torch.randint(0, 50, (2, 5)), torch.randint(0, 50, (2, 5))
    q = make("qformer")
    assert not torch.allclose(
        q(features, None, a, torch.ones_like(a)), q(features, None, b, torch.ones_like(b))
    )
    # padded instruction positions are ignored
    padded = torch.cat([a, torch.randint(0, 50, (2, 3))], dim=1)
    pad_mask = torch.cat([torch.ones_like(a), torch.zeros(2, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(
        q(features, None, a, torch.ones_like(a)), q(features, None, padded, pad_mask), atol=1e-5
    )
    lin = make("linear")
    assert lin.instruction_aware is False and q.instruction_aware is True
    assert torch.equal(lin(features, None, a, None), lin(features, None, b, None))


def test_unknown_kind_and_unresolved_vocab_are_clear_errors():
    with pytest.raises(ValueError, match="projection.kind"):
        build_projection(ProjectionConfig(kind="mlp"), 8, 8)
    with pytest.raises(ValueError, match="qformer_vocab_size"):
        build_projection(ProjectionConfig(kind="qformer", qformer_vocab_size=0), 8, 8)


def _tiny_instructblip(tmp_path, vision_hidden=24, vocab=50):
    """A tiny InstructBlipForConditionalGeneration saved in the HF layout."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    config = InstructBlipConfig(
        vision_config=dict(
            hidden_size=vision_hidden,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=16,
            patch_size=8,
        ),
        qformer_config=dict(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            cross_attention_frequency=1,
            encoder_hidden_size=vision_hidden,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=60,
            hidden_size=40,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        num_query_tokens=4,
    )
    torch.manual_seed(1)
    model = InstructBlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # post_init leaves some LayerNorms at identity; make every weight count
        for name, param in model.named_parameters():
            if "layernorm" in name.lower() or "query_tokens" in name:
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(tmp_path / "instructblip")
    return model, tmp_path / "instructblip"


def test_hf_checkpoint_gives_identical_outputs(tmp_path):
    hf, path = _tiny_instructblip(tmp_path)
    proj = make("qformer", encoder_dim=24, llm_hidden=40)
    report = load_pretrained_qformer(proj, path, skip_cross_attention=False)
    assert not report["skipped_rule"] and not report["skipped_vocab"]
    assert "layernorm.weight" in report["loaded"] and "query_tokens" in report["loaded"]
    assert report["missing"] == []  # every parameter of the projection came from the checkpoint
    pixels = torch.randn(3, 3, 16, 16)
    ids = torch.randint(1, 50, (3, 6))
    ids_mask = torch.ones_like(ids)
    ids_mask[0, 4:] = 0
    with torch.no_grad():
        expected = hf.get_image_features(
            pixels, qformer_input_ids=ids, qformer_attention_mask=ids_mask
        ).pooler_output
        # xib reads the encoder's tokens before the (trainable, moved into the projection) LayerNorm
        raw = hf.vision_model(pixels, output_hidden_states=True).hidden_states[-1]
        ours = proj(raw, torch.ones(raw.shape[:2], dtype=torch.bool), ids, ids_mask)
    assert ours.shape == expected.shape == (3, 4, 40)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_paper_rule_skips_cross_attention_for_3d_and_audio(tmp_path):
    _, path = _tiny_instructblip(tmp_path)
    proj = make("qformer", encoder_dim=16, llm_hidden=40)  # a pc/audio encoder of another width
    before = {k: v.clone() for k, v in proj.state_dict().items()}
    report = load_pretrained_qformer(proj, path, skip_cross_attention=True)
    assert report["skipped_rule"] and all(
        ".crossattention." in k or "post_layernorm" in k for k in report["skipped_rule"]
    )
    state = proj.state_dict()
    for key, value in state.items():
        if ".crossattention." in key or key.startswith("layernorm."):
            assert torch.equal(value, before[key]), key  # left at its own initialisation
    assert not torch.equal(state["query_tokens"], before["query_tokens"])
    assert not torch.equal(
        state["qformer.encoder.layer.0.attention.attention.query.weight"],
        before["qformer.encoder.layer.0.attention.attention.query.weight"],
    )
    # without the rule, the width mismatch is an error naming the tensors
    with pytest.raises(XibError, match="crossattention"):
        load_pretrained_qformer(make("qformer", encoder_dim=16), path, skip_cross_attention=False)


def test_vocabulary_mismatch_keeps_own_word_embeddings(tmp_path):
    _, path = _tiny_instructblip(tmp_path, vocab=30)
    proj = make("qformer")
    report = load_pretrained_qformer(proj, path, skip_cross_attention=False)
    assert report["skipped_vocab"] == ["qformer.embeddings.word_embeddings.weight"]
