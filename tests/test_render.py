"""Renders: right shapes and types per modality, deterministic, finite, and different across kinds."""

from __future__ import annotations

import numpy as np
import pytest

from xib.config import load_config
from xib.data import media
from xib.data.render import render, shape_mask
from xib.data.world import KINDS, SHAPES, Entity


@pytest.fixture(scope="module")
def world():
    return load_config(["data.world.points=1024", "data.world.audio_seconds=1.0"]).data.world


def _render_all(modality, world, seeds=(0, 1, 2)):
    return {k.name: [render(k, modality, np.random.default_rng(s), world) for s in seeds] for k in KINDS}


@pytest.mark.parametrize("modality", ["image", "pc", "audio", "video"])
def test_shapes_types_and_determinism(modality, world):
    expected = {
        "image": ((world.image_size, world.image_size, 3), np.uint8),
        "pc": ((world.points, 3), np.float32),
        "audio": ((int(world.sample_rate * world.audio_seconds),), np.float32),
        "video": ((world.video_frames, world.video_size, world.video_size, 3), np.uint8),
    }[modality]
    for kind in KINDS:
        a = render(kind, modality, np.random.default_rng(7), world)
        b = render(kind.name, modality, np.random.default_rng(7), world)
        c = render(kind, modality, np.random.default_rng(8), world)
        assert (a.shape, a.dtype) == expected, kind.name
        assert np.isfinite(a.astype(np.float64)).all()
        assert np.array_equal(a, b), f"{kind.name}/{modality} is not deterministic from the rng"
        assert not np.array_equal(a, c), f"{kind.name}/{modality} has no per-item jitter"
        if modality == "audio":
            assert np.abs(a).max() <= 1.0 and a.std() > 0.01
        # every render survives its file format
        decoded = media.decode(modality, media.encode(modality, a, sample_rate=world.sample_rate))
        assert decoded.shape == a.shape


def _nearest_centroid_accuracy(features: dict[str, list[np.ndarray]]) -> float:
    """Leave-one-out nearest centroid over kinds: a stand-in for 'a small encoder tells kinds apart'."""
    names = list(features)
    correct = total = 0
    for name in names:
        for i, f in enumerate(features[name]):
            best, best_d = None, np.inf
            for other in names:
                pool = [g for j, g in enumerate(features[other]) if not (other == name and j == i)]
                d = float(np.linalg.norm(f - np.mean(pool, axis=0)))
                if d < best_d:
                    best, best_d = other, d
            correct += best == name
            total += 1
    return correct / total


def _image_features(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32) / 255.0
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).mean(0)  # setting
    fg = np.abs(img - border).sum(-1) > 0.25
    colour = img[fg].mean(0) if fg.any() else np.zeros(3)
    ys, xs = np.nonzero(fg)
    h = (ys.max() - ys.min() + 1) if fg.any() else 0
    w = (xs.max() - xs.min() + 1) if fg.any() else 0
    fill = fg.sum() / max(h * w, 1)
    centre = fg[ys.mean().astype(int), xs.mean().astype(int)] if fg.any() else 0
    return np.concatenate([border, colour, [h / max(w, 1) * 0.3, fill, float(centre)]])


def _pc_features(pc: np.ndarray) -> np.ndarray:
    centred = pc - pc.mean(0)
    r = np.linalg.norm(centred, axis=1)
    hist = np.histogram(r / r.max(), bins=8, range=(0, 1))[0] / len(r)
    z = centred[:, 2]
    return np.concatenate([[r.max(), z.std() / (r.std() + 1e-6) * 0.1], hist, [np.abs(z).max()]])


def _audio_features(wave: np.ndarray, sr: int) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(wave))
    bands = np.add.reduceat(spectrum, np.geomspace(1, len(spectrum) - 1, 25).astype(int))
    env = np.abs(wave).reshape(20, -1).mean(1)
    return np.concatenate([np.log1p(bands / bands.sum() * 100), [env.std() / (env.mean() + 1e-6)]])


def _video_features(clip: np.ndarray) -> np.ndarray:
    per_frame = [_image_features(f) for f in clip]
    centres = []
    for f in clip.astype(np.float32):
        fg = np.abs(f - f[0, 0]).sum(-1) > 60
        ys, xs = np.nonzero(fg)
        centres.append([xs.mean(), ys.mean()] if fg.any() else [0, 0])
    motion = np.abs(np.diff(np.asarray(centres), axis=0)).mean(0) / clip.shape[1]
    return np.concatenate([per_frame[0][3:6], motion * 5])


@pytest.mark.parametrize("modality", ["image", "pc", "audio", "video"])
def test_kinds_are_told_apart(modality, world):
    renders = _render_all(modality, world, seeds=range(4))
    extract = {
        "image": _image_features,
        "pc": _pc_features,
        "audio": lambda a: _audio_features(a, world.sample_rate),
        "video": _video_features,
    }[modality]
    features = {name: [extract(x) for x in xs] for name, xs in renders.items()}
    # kinds differ on average, and even hand-made features mostly recognise the kind
    means = [np.mean(v, axis=0) for v in features.values()]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 0
    assert _nearest_centroid_accuracy(features) >= 0.75, modality


def test_point_cloud_sizes_are_clearly_apart(world):
    extent = {}
    for kind in KINDS:
        pcs = [render(kind, "pc", np.random.default_rng(s), world) for s in range(3)]
        extent.setdefault(kind.size, []).extend(np.linalg.norm(p - p.mean(0), axis=1).max() for p in pcs)
    assert max(extent["small"]) < min(extent["medium"]) and max(extent["medium"]) < min(extent["large"])


def test_silhouettes_are_distinct_and_entities_render_as_their_kind(world):
    yy, xx = np.mgrid[-1.2:1.2:64j, -1.2:1.2:64j]
    masks = [shape_mask(s, xx, yy) for s in SHAPES]
    for i, a in enumerate(masks):
        for b in masks[i + 1 :]:
            assert (a != b).mean() > 0.05
    entity = Entity("dog-0000", "dog", "train")
    assert np.array_equal(
        render(entity, "image", np.random.default_rng(0), world),
        render("dog", "image", np.random.default_rng(0), world),
    )
    with pytest.raises(ValueError):
        render("unicorn", "image", np.random.default_rng(0), world)
    with pytest.raises(ValueError):
        render("dog", "smell", np.random.default_rng(0), world)
