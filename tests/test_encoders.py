"""Frozen encoders: shapes and masks per modality, views kept apart, frozen, save -> load, fingerprints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from xib.errors import XibError
from xib.models.config import EncoderConfig
from xib.models.encoders import build_encoder

TINY = {
    "image": EncoderConfig(
        family="clip_vision",
        arch={
            "image_size": 16,
            "patch_size": 8,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
    ),
    "audio": EncoderConfig(
        family="ast",
        arch={
            "num_mel_bins": 16,
            "max_length": 50,
            "patch_size": 16,
            "frequency_stride": 16,
            "time_stride": 16,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        views=2,
        segment_seconds=0.5,
        mean=[-4.0],
        std=[4.0],
    ),
    "pc": EncoderConfig(
        family="pointbert",
        arch={
            "num_groups": 8,
            "group_size": 16,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "sample_points": 128,
            "pointnet_dim": 8,
        },
    ),
}
TINY["video"] = dataclasses.replace(TINY["image"], views=3)


def media(modality: str, count: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if modality == "image":
        return [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(count)]
    if modality == "video":
        return [rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8) for _ in range(count)]
    if modality == "audio":
        return [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(count)]
    return [rng.standard_normal((300, 3)).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize(
    ("modality", "views", "tokens"),
    [("image", 1, 1 + 4), ("video", 3, 1 + 4), ("audio", 2, 2 + 3), ("pc", 1, 1 + 8)],
)
def test_shapes_and_masks(modality: str, views: int, tokens: int) -> None:
    encoder = build_encoder(modality, TINY[modality])
    batch = encoder.preprocess(media(modality, count=3))
    assert batch.shape[:2] == (3, views)
    out = encoder(batch)
    assert out.features.shape == (3, views, tokens, 32) and out.features.dtype == torch.float32
    assert out.mask.shape == (3, views, tokens) and out.mask.dtype == torch.bool and bool(out.mask.all())
    assert encoder.hidden_size == 32 and torch.isfinite(out.features).all()
    # different inputs, different features
    assert not torch.allclose(out.features[0], out.features[1])


def test_video_frames_are_encoded_apart() -> None:
    image, video = build_encoder("image", TINY["image"]), build_encoder("video", TINY["video"])
    clip = media("video", count=1)[0]  # 7 frames -> views at frames 0, 3, 6
    feats = video(video.preprocess([clip])).features[0]
    for view, frame in enumerate((0, 3, 6)):
        alone = image(image.preprocess([clip[frame]])).features[0, 0]
        torch.testing.assert_close(feats[view], alone)


def test_audio_segments_are_encoded_apart() -> None:
    two = build_encoder("audio", TINY["audio"])
    one = build_encoder("audio", dataclasses.replace(TINY["audio"], views=1))
    wave = media("audio", count=1)[0]  # 1.0 s, segments of 0.5 s at 0 and 8000
    feats = two(two.preprocess([wave])).features[0]
    for view, start in enumerate((0, 8000)):
        alone = one(one.preprocess([wave[start : start + 8000]])).features[0, 0]
        torch.testing.assert_close(feats[view], alone)
    # a clip shorter than one segment is zero-padded, not rejected
    assert two.preprocess([wave[:3000]]).shape == (1, 2, 50, 16)


def test_kaldi_fbank_matches_transformers_reference() -> None:
    from transformers.audio_utils import spectrogram, window_function

    from xib.models.encoders.audio import kaldi_fbank

    encoder = build_encoder("audio", TINY["audio"])
    wave = media("audio", count=1)[0][:8000]
    ours = kaldi_fbank(torch.from_numpy(wave)[None], encoder.mel_filters, 16000)[0].numpy()
    reference = spectrogram(
        wave.astype(np.float64),
        window_function(400, "hann", periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        preemphasis=0.97,
        mel_filters=encoder.mel_filters.double().numpy(),
        log_mel="log",
        mel_floor=1.192092955078125e-07,
        remove_dc_offset=True,
    ).T
    assert ours.shape == reference.shape == (48, 16)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_farthest_point_sampling_and_grouping() -> None:
    from xib.models.encoders.pointbert import farthest_point_sample, group_points

    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [5, 0, 0], [9.9, 0, 0]]])
    assert farthest_point_sample(xyz, 3).tolist() == [[0, 2, 3]]
    patches, centres = group_points(xyz, 2, 2)
    assert centres.tolist() == [[[0.0, 0, 0], [10, 0, 0]]]
    assert torch.allclose(patches[0, 1].abs().sum(-1).sort().values, torch.tensor([0.0, 0.1]))


def test_frozen() -> None:
    for modality in ("image", "audio", "pc"):
        encoder = build_encoder(modality, TINY[modality])
        assert not any(p.requires_grad for p in encoder.parameters())
        parent = torch.nn.Sequential(encoder, torch.nn.Linear(1, 1))
        parent.train()
        assert not encoder.training and not any(m.training for m in encoder.modules())
        with torch.enable_grad():
            out = encoder(encoder.preprocess(media(modality)))
        assert not out.features.requires_grad


@pytest.mark.parametrize("modality", ["image", "audio", "pc"])
def test_save_load_exact(modality: str, tmp_path) -> None:
    cfg = dataclasses.replace(TINY[modality], seed=7)
    encoder = build_encoder(modality, cfg)
    with torch.no_grad():  # weights unlike any fresh init: loading must really read them
        for param in encoder.parameters():
            param.add_(0.01 * torch.randn_like(param))
    target = tmp_path / "enc"
    encoder.save(target)
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind
    loaded = build_encoder(modality, dataclasses.replace(cfg, path=str(target), seed=0, arch={}))
    assert loaded.loaded_from == target
    batch = encoder.preprocess(media(modality))
    assert torch.equal(encoder(batch).features, loaded(batch).features)
    assert loaded.fingerprint() == encoder.fingerprint()
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_fingerprint_tracks_weights_and_preprocessing(tmp_path) -> None:
    cfg = TINY["audio"]
    first = build_encoder("audio", cfg).fingerprint()
    assert build_encoder("audio", cfg).fingerprint() == first  # seeded build: stable
    assert (
        build_encoder("audio", dataclasses.replace(cfg, path=str(tmp_path / "absent"))).fingerprint() == first
    )
    assert build_encoder("audio", dataclasses.replace(cfg, seed=1)).fingerprint() != first  # other weights
    for change in ({"segment_seconds": 0.25}, {"views": 3}, {"mean": [-3.0]}, {"sample_rate": 8000}):
        assert build_encoder("audio", dataclasses.replace(cfg, **change)).fingerprint() != first, change
    encoder = build_encoder("audio", cfg)
    with torch.no_grad():
        next(encoder.parameters()).view(-1)[0] += 1e-3
    assert encoder.fingerprint() != first
    image = TINY["image"]
    base = build_encoder("image", image).fingerprint()
    assert build_encoder("image", dataclasses.replace(image, std=[0.5, 0.5, 0.5])).fingerprint() != base
    assert build_encoder("video", dataclasses.replace(image, views=1)).fingerprint() != base  # other modality
    pc = TINY["pc"]
    assert (
        build_encoder("pc", dataclasses.replace(pc, pc_normalize="unit_sphere")).fingerprint()
        != build_encoder("pc", pc).fingerprint()
    )


def test_pc_normalisation_keeps_size_when_centering() -> None:
    encoder = build_encoder("pc", TINY["pc"])
    small = media("pc", count=1)[0]
    batch = encoder.preprocess([small + 5.0, 3.0 * small])
    assert abs(float(batch[0].mean())) < 0.2  # centred
    assert float(batch[1].abs().max()) > 2.0 * float(batch[0].abs().max())  # size kept
    sphere = build_encoder("pc", dataclasses.replace(TINY["pc"], pc_normalize="unit_sphere"))
    assert float(sphere.preprocess([3.0 * small])[0].norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)


def test_blip2_vision_family_round_trip(tmp_path) -> None:
    cfg = dataclasses.replace(TINY["image"], family="blip2_vision", feature_layer=-2)
    encoder = build_encoder("image", cfg)
    out = encoder(encoder.preprocess(media("image")))
    assert out.features.shape == (2, 1, 5, 32)
    encoder.save(tmp_path / "eva")
    assert json.loads((tmp_path / "eva" / "config.json").read_text())["model_type"] == "blip_2_vision_model"
    loaded = build_encoder("image", dataclasses.replace(cfg, path=str(tmp_path / "eva")))
    assert loaded.fingerprint() == encoder.fingerprint()


def test_clear_errors(tmp_path) -> None:
    with pytest.raises(XibError, match="unknown encoder family"):
        build_encoder("image", dataclasses.replace(TINY["image"], family="eva"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(XibError, match="config.json"):
        build_encoder("image", dataclasses.replace(TINY["image"], path=str(tmp_path / "empty")))
    with pytest.raises(XibError, match="unknown keys"):
        build_encoder("pc", dataclasses.replace(TINY["pc"], arch={"groups": 3}))
    with pytest.raises(XibError, match="unknown keys"):
        build_encoder("image", {"family": "clip_vision", "colour": 1})
    image = build_encoder("image", TINY["image"])
    with pytest.raises(ValueError, match="uint8"):
        image.preprocess([np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="preprocess"):
        image(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="float32"):
        build_encoder("audio", TINY["audio"]).preprocess([np.zeros((2, 100), dtype=np.float32)])


def test_demo_config_encoders_build() -> None:
    from xib.config import load_config

    cfg = load_config(["paths.root=/nonexistent-xib-root"])
    for modality in ("image", "video", "audio", "pc"):
        encoder = build_encoder(modality, cfg.model.encoders[modality])
        assert encoder.loaded_from is None and encoder.views == cfg.model.encoders[modality].views
