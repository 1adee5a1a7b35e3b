"""Projection checkpoints: exact save -> load, provenance, integrity, initialisation, composition."""

from __future__ import annotations

import json

import pytest
import torch

from xib.errors import XibError
from xib.models.checkpoint import (
    INFO_FILE,
    WEIGHTS_FILE,
    compose_model,
    load_projection,
    new_projection,
    save_projection,
)
from xib.models.testing import demo_model_cfg, save_tiny_llm, tiny_model
from xib.models.xinstructblip import MediaInput


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return save_tiny_llm(tmp_path_factory.mktemp("llm") / "llm")


@pytest.mark.parametrize("kind", ["qformer", "linear"])
def test_save_load_is_exact(tmp_path, llm_dir, kind):
    cfg = demo_model_cfg(llm_dir, kind=kind, dropout=0.0)
    projection, report = new_projection(cfg, "audio", 20, 32, qformer_vocab_size=83)
    assert report["kind"] == "random"
    meta = {"encoder_fingerprint": "ast-abc123", "step": 300, "data_hashes": {"instruct/audio/train": "f00d"}}
    save_projection(tmp_path / "ckpt", "audio", projection, meta)
    loaded, info = load_projection(tmp_path / "ckpt")
    assert type(loaded) is type(projection)
    original = projection.state_dict()
    assert set(loaded.state_dict()) == set(original)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    features = torch.randn(3, 7, 20)
    ids = torch.randint(0, 83, (3, 4))
    projection.eval(), loaded.eval()
    assert torch.equal(projection(features, None, ids, None), loaded(features, None, ids, None))
    assert info["modality"] == "audio" and info["kind"] == kind
    assert info["encoder_dim"] == 20 and info["llm_hidden"] == 32
    assert info["config"]["num_query_tokens"] == cfg.projection.num_query_tokens
    assert info["provenance"]["step"] == 300 and info["provenance"]["encoder_fingerprint"] == "ast-abc123"
    assert info["provenance"]["data_hashes"] == {"instruct/audio/train": "f00d"}
    assert info["provenance"]["git_commit"]
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_integrity_errors_are_clear(tmp_path, llm_dir):
    cfg = demo_model_cfg(llm_dir)
    projection, _ = new_projection(cfg, "image", 24, 32, qformer_vocab_size=83)
    with pytest.raises(XibError, match="no projection checkpoint"):
        load_projection(tmp_path / "nothing")
    save_projection(tmp_path / "a", "image", projection, {"step": 1})
    other, _ = new_projection(cfg, "image", 24, 32, qformer_vocab_size=83)
    save_projection(tmp_path / "b", "image", other, {"step": 2})
    # weights of b with the description of a: refused
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes((tmp_path / "b" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(XibError, match="sha256"):
        load_projection(tmp_path / "a")
    info = json.loads((tmp_path / "b" / INFO_FILE).read_text())
    del info["encoder_dim"]
    (tmp_path / "b" / INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(XibError, match="encoder_dim"):
        load_projection(tmp_path / "b")


def test_video_initialises_from_the_trained_image_projection(tmp_path, llm_dir):
    cfg = demo_model_cfg(llm_dir)
    image, _ = new_projection(cfg, "image", 24, 32, qformer_vocab_size=83)
    with torch.no_grad():
        image.query_tokens.add_(1.0)  # "trained"
    save_projection(tmp_path / "image", "image", image, {"step": 10})
    video, report = new_projection(cfg, "video", 24, 32, qformer_vocab_size=83, init_dir=tmp_path / "image")
    assert report["kind"] == "xib" and report["from_modality"] == "image"
    for key, value in video.state_dict().items():
        assert torch.equal(value, image.state_dict()[key])
    with pytest.raises(XibError, match="encoder_dim 24 vs 20"):
        new_projection(cfg, "audio", 20, 32, qformer_vocab_size=83, init_dir=tmp_path / "image")
    # joining a video's frames changes what the projection reads, not its weights
    joined = demo_model_cfg(llm_dir, join_views=True)
    video, report = new_projection(
        joined, "video", 24, 32, qformer_vocab_size=83, init_dir=tmp_path / "image"
    )
    assert report["kind"] == "xib" and video.config.join_views
    with pytest.raises(XibError, match="num_query_tokens 6 vs 4"):
        fewer = demo_model_cfg(llm_dir, num_query_tokens_by_modality={"video": 4})
        new_projection(fewer, "video", 24, 32, qformer_vocab_size=83, init_dir=tmp_path / "image")


def test_query_count_per_modality_is_recorded_and_read_back(tmp_path, llm_dir):
    cfg = demo_model_cfg(llm_dir, num_query_tokens=6, num_query_tokens_by_modality={"pc": 3})
    pc, _ = new_projection(cfg, "pc", 16, 32, qformer_vocab_size=83)
    image, _ = new_projection(cfg, "image", 24, 32, qformer_vocab_size=83)
    assert (pc.num_tokens, image.num_tokens) == (3, 6)
    save_projection(tmp_path / "pc", "pc", pc, {"step": 1})
    loaded, _ = load_projection(tmp_path / "pc")
    assert loaded.num_tokens == 3 and loaded.query_tokens.shape[1] == 3


def test_compose_model_from_any_set_of_checkpoints(tmp_path, llm_dir):
    trained = tiny_model(llm_dir, {"image": 24, "pc": 16}, dropout=0.0, seed=5).eval()
    for modality, projection in trained.projections.items():
        save_projection(tmp_path / modality, modality, projection, {"step": 1})
    cfg = demo_model_cfg(llm_dir, dropout=0.0)
    model = compose_model(cfg, {"image": tmp_path / "image", "pc": tmp_path / "pc"}).eval()
    assert set(model.projections) == {"image", "pc"}
    assert model.checkpoint_info["pc"]["modality"] == "pc"
    inputs = [
        MediaInput("image", torch.randn(1, 5, 24), None, "describe"),
        MediaInput("pc", torch.randn(1, 1, 16)),
    ]
    with torch.no_grad():
        for ours, theirs in zip(model.soft_tokens(inputs), trained.soft_tokens(inputs)):
            assert torch.equal(ours, theirs)
    only_pc = compose_model(cfg, {"pc": tmp_path / "pc"})
    assert set(only_pc.projections) == {"pc"}
    with pytest.raises(XibError, match="a image projection, asked for audio"):
        compose_model(cfg, {"audio": tmp_path / "image"})


def test_compose_with_encoders_checks_the_fingerprint(tmp_path, llm_dir):
    import numpy as np

    from xib.models.encoders import build_encoder

    cfg = demo_model_cfg(llm_dir, dropout=0.0)
    cfg.encoders["image"].path = str(tmp_path / "no-such-encoder")  # built from `arch`, deterministically
    encoder = build_encoder("image", cfg.encoders["image"])
    projection, _ = new_projection(cfg, "image", 64, 32, qformer_vocab_size=83)
    save_projection(tmp_path / "good", "image", projection, {"encoder_fingerprint": encoder.fingerprint()})
    save_projection(tmp_path / "bad", "image", projection, {"encoder_fingerprint": "another-encoder"})
    model = compose_model(cfg, {"image": tmp_path / "good"}, with_encoders=True).eval()
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    enc = model.encoders["image"](model.encoders["image"].preprocess([image]))
    media = MediaInput("image", enc.features[0], enc.mask[0], "describe")
    assert model.soft_tokens([media])[0].shape == (6, 32)
    assert not any(p.requires_grad for p in model.encoders.parameters())
    with pytest.raises(XibError, match="trained on encoder another-encoder"):
        compose_model(cfg, {"image": tmp_path / "bad"}, with_encoders=True)
