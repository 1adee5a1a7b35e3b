"""Render an entity of the synthetic world into one medium, deterministically from a numpy Generator.

What each modality shows follows `xib.data.world.caption`: an image shows colour, shape and setting
(the habitat's background colour); a point cloud shows shape and size only; audio carries the kind's
sound; video shows colour, shape and motion on a neutral background. Every item gets its own jitter
(position, scale, pitch, volume, noise) from `rng`, so two items of a kind differ while two kinds stay
apart for a small encoder.

    image  uint8 [S, S, 3]        S = world.image_size
    pc     float32 [N, 3]         N = world.points, xyz, z vertical, absolute scale (size shows)
    audio  float32 [T] in [-1, 1] T = world.sample_rate * world.audio_seconds
    video  uint8 [F, V, V, 3]     F = world.video_frames, V = world.video_size
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xib.modalities import MODALITIES
from xib.data.world import COLOURS, HABITAT_BACKGROUND, KINDS_BY_NAME, Kind

# Video shows appearance and motion, not setting: one background unlike every kind's colour.
VIDEO_BACKGROUND = (176, 164, 196)
# Point-cloud radius (before jitter) by size: small, medium and large are clearly apart.
SIZE_SCALE = {"small": 0.35, "medium": 0.65, "large": 1.0}


def resolve_kind(subject: Any) -> Kind:
    """A `Kind`, from a Kind, a kind name, or anything with a `kind` name (an Entity, a manifest row)."""
    if isinstance(subject, Kind):
        return subject
    name = subject if isinstance(subject, str) else getattr(subject, "kind", None)
    if name not in KINDS_BY_NAME:
        raise ValueError(f"unknown kind {name!r}")
    return KINDS_BY_NAME[name]


def render(subject: Any, modality: str, rng: np.random.Generator, world: Any) -> np.ndarray:
    """One medium of `subject` (Kind, kind name or Entity); `world` is `cfg.data.world`."""
    kind = resolve_kind(subject)
    if modality == "image":
        return render_image(kind, rng, world)
    if modality == "pc":
        return render_pc(kind, rng, world)
    if modality == "audio":
        return render_audio(kind, rng, world)
    if modality == "video":
        return render_video(kind, rng, world)
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


# ----------------------------------------------------------------------------------------- 2D shapes
def shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The 2D silhouette of `shape` at unit radius; x right, y up, in the shape's own frame."""
    ax, ay = np.abs(x), np.abs(y)
    if shape == "sphere":  # disc
        return x * x + y * y <= 1.0
    if shape == "cone":  # triangle, apex up
        return (y >= -0.85) & (y <= 1.0) & (ax <= (1.0 - y) * 0.55)
    if shape == "cylinder":  # tall rectangle
        return (ax <= 0.45) & (ay <= 1.0)
    if shape == "cube":  # square
        return (ax <= 0.78) & (ay <= 0.78)
    if shape == "ring":  # annulus
        r2 = x * x + y * y
        return (r2 <= 1.0) & (r2 >= 0.3)
    if shape == "cross":  # plus sign
        return ((ax <= 0.28) & (ay <= 1.0)) | ((ay <= 0.28) & (ax <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def _draw(
    canvas: np.ndarray, shape: str, colour: np.ndarray, cx: float, cy: float, radius: float, angle: float
) -> None:
    """Paint `shape` (centre cx, cy in pixels, y down; radius in pixels; angle in radians) in place."""
    size_y, size_x = canvas.shape[:2]
    yy, xx = np.mgrid[0:size_y, 0:size_x].astype(np.float32)
    dx, dy = (xx + 0.5 - cx) / radius, (cy - yy - 0.5) / radius
    cos, sin = np.cos(angle), np.sin(angle)
    mask = shape_mask(shape, cos * dx + sin * dy, -sin * dx + cos * dy)
    canvas[mask] = colour


def _finish(canvas: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    noisy = canvas + rng.normal(0.0, noise_std, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _colour(name: str, rng: np.random.Generator, jitter: float) -> np.ndarray:
    base = np.asarray(COLOURS[name], dtype=np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, size=3), 0, 255).astype(np.float32)


def render_image(kind: Kind, rng: np.random.Generator, world: Any) -> np.ndarray:
    size = int(world.image_size)
    # float64 once the jitter is added (as before); the float32 canvas casts it on fill
    background: np.ndarray = np.asarray(HABITAT_BACKGROUND[kind.habitat], dtype=np.float32)
    background = background + rng.uniform(-world.colour_jitter, world.colour_jitter, size=3)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = background
    radius = size * world.shape_radius * (1.0 + rng.uniform(-world.scale_jitter, world.scale_jitter))
    shift = size * world.position_jitter
    cx, cy = size / 2 + rng.uniform(-shift, shift), size / 2 + rng.uniform(-shift, shift)
    angle = np.deg2rad(rng.uniform(-world.angle_jitter_deg, world.angle_jitter_deg))
    _draw(canvas, kind.shape, _colour(kind.colour, rng, world.colour_jitter), cx, cy, radius, angle)
    return _finish(canvas, rng, world.image_noise_std)


# --------------------------------------------------------------------------------------------- video
def _trajectory(motion: str, frames: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(x, y, angle) per frame for a motion; x, y as fractions of the frame, y down, angle in radians.

    Speeds are in frame widths per clip so motion reads the same at any frame count.
    """
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    direction = rng.choice([-1.0, 1.0])
    phase = rng.uniform(0, 2 * np.pi)
    zeros = np.zeros(frames)

    def across(span: float) -> np.ndarray:
        start = 0.5 - direction * span / 2 + rng.uniform(-0.04, 0.04)
        return start + direction * span * t

    y0 = 0.5 + rng.uniform(-0.06, 0.06)
    if motion == "running":  # fast, flat
        return across(0.62), y0 + zeros, zeros
    if motion == "galloping":  # fast with a bounce every stride
        return across(0.62), y0 - 0.14 * np.abs(np.sin(np.pi * 2.0 * t * frames / 2 + phase)), zeros
    if motion == "walking":  # slow, flat
        return across(0.18), y0 + zeros, zeros
    if motion == "flying":  # up-and-down arcs
        return across(0.4), 0.5 - 0.25 * np.sin(2 * np.pi * t + phase), zeros
    if motion == "swimming":  # small quick waves
        return across(0.32), y0 + 0.07 * np.sin(4 * np.pi * t + phase), 0.25 * np.sin(4 * np.pi * t + phase)
    if motion == "driving":  # straight and steady
        return across(0.5), y0 + 0.15 + zeros, zeros
    if motion == "rolling":  # moves while turning
        return across(0.36), y0 + zeros, direction * np.pi * 1.5 * t + phase
    if motion == "swaying":  # rocks in place
        sway = np.sin(2 * np.pi * 1.5 * t + phase)
        return 0.5 + 0.08 * sway, y0 + zeros, 0.45 * sway
    if motion == "still":
        return 0.5 + rng.uniform(-0.05, 0.05) + zeros, y0 + zeros, zeros
    raise ValueError(f"unknown motion {motion!r}")


def render_video(kind: Kind, rng: np.random.Generator, world: Any) -> np.ndarray:
    frames, size = int(world.video_frames), int(world.video_size)
    background: np.ndarray = np.asarray(VIDEO_BACKGROUND, dtype=np.float32)  # float64 after the jitter
    background = background + rng.uniform(-world.colour_jitter, world.colour_jitter, size=3)
    colour = _colour(kind.colour, rng, world.colour_jitter)
    radius = size * world.video_shape_radius * (1.0 + rng.uniform(-world.scale_jitter, world.scale_jitter))
    xs, ys, angles = _trajectory(kind.motion, frames, rng)
    tilt = np.deg2rad(rng.uniform(-world.angle_jitter_deg, world.angle_jitter_deg))
    clip = np.empty((frames, size, size, 3), dtype=np.float32)
    clip[:] = background
    for i in range(frames):
        _draw(clip[i], kind.shape, colour, xs[i] * size, ys[i] * size, radius, angles[i] + tilt)
    return _finish(clip, rng, world.image_noise_std)


# --------------------------------------------------------------------------------------- point cloud
def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _box_surface(rng: np.random.Generator, n: int, half: np.ndarray) -> np.ndarray:
    """Points uniform on the surface of an axis-aligned box with half extents `half`."""
    hx, hy, hz = half
    areas = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = rng.uniform(-1.0, 1.0, size=(n, 3))
    axis = face // 2
    pts[np.arange(n), axis] = np.where(face % 2 == 0, -1.0, 1.0)
    return pts * half


def _shape_points(shape: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` points on the surface of `shape` at unit radius, z up, centred at the origin."""
    if shape == "sphere":
        return _unit(rng, n)
    if shape == "cube":
        return _box_surface(rng, n, np.array([0.75, 0.75, 0.75]))
    if shape in ("cone", "cylinder"):
        radius, height = (0.8, 1.8) if shape == "cone" else (0.5, 2.0)
        slant = np.hypot(radius, height) if shape == "cone" else height
        side = np.pi * radius * slant if shape == "cone" else 2 * np.pi * radius * height
        caps = np.pi * radius**2 * (1 if shape == "cone" else 2)
        on_side = rng.random(n) < side / (side + caps)
        theta = rng.uniform(0, 2 * np.pi, n)
        u = rng.random(n)
        if shape == "cone":  # area element grows linearly toward the base
            r = np.where(on_side, radius * np.sqrt(u), radius * np.sqrt(rng.random(n)))
            z = np.where(on_side, height * (1 - np.sqrt(u)), 0.0) - height / 2
        else:
            r = np.where(on_side, radius, radius * np.sqrt(rng.random(n)))
            top = rng.random(n) < 0.5
            z = np.where(on_side, height * (u - 0.5), np.where(top, height / 2, -height / 2))
        return np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)
    if shape == "ring":  # a torus standing up like a wheel (axis along y)
        big, small = 0.75, 0.25
        u = rng.uniform(0, 2 * np.pi, n)
        # rejection-free area weighting: the tube angle follows (big + small cos v)
        v = rng.uniform(0, 2 * np.pi, 4 * n)
        keep = rng.random(4 * n) < (big + small * np.cos(v)) / (big + small)
        v = v[keep][:n]
        while v.size < n:  # practically never: acceptance is about 3/4
            v = np.concatenate([v, rng.uniform(0, 2 * np.pi, n)])[:n]
        ring = big + small * np.cos(v)
        return np.stack([ring * np.cos(u), small * np.sin(v), ring * np.sin(u)], axis=1)
    if shape == "cross":  # three orthogonal bars
        bar, thick = 1.0, 0.22
        which = rng.integers(0, 3, n)
        out = np.empty((n, 3))
        for axis in range(3):
            sel = which == axis
            half = np.full(3, thick)
            half[axis] = bar
            out[sel] = _box_surface(rng, int(sel.sum()), half)
        return out
    raise ValueError(f"unknown shape {shape!r}")


def render_pc(kind: Kind, rng: np.random.Generator, world: Any) -> np.ndarray:
    n = int(world.points)
    pts = _shape_points(kind.shape, rng, n)
    scale = SIZE_SCALE[kind.size] * (1.0 + rng.uniform(-world.pc_scale_jitter, world.pc_scale_jitter))
    theta = rng.uniform(0, 2 * np.pi)  # rotation about the vertical (z) axis
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    pts = pts @ rot.T * scale
    pts += rng.normal(0.0, world.pc_noise_std, size=pts.shape)
    pts += rng.uniform(-world.pc_shift, world.pc_shift, size=3)
    return pts.astype(np.float32)


# --------------------------------------------------------------------------------------------- audio
def _envelope(t: np.ndarray, starts: np.ndarray, length: float, attack: float = 0.005) -> np.ndarray:
    """Sum of bursts starting at `starts` (s), each `length` s with a short attack and linear release."""
    env = np.zeros_like(t)
    for start in np.asarray(starts).tolist():  # Python floats keep t float32 (NEP 50)
        local = t - start
        inside = (local >= 0) & (local < length)
        env[inside] = np.maximum(
            env[inside],
            np.minimum(local[inside] / attack, 1.0) * (1.0 - local[inside] / length),
        )
    return env


def _harmonics(phase: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    return sum(w * np.sin((i + 1) * phase) for i, w in enumerate(weights))


def _band_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n, dtype=np.float32))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n).astype(np.float32)
    return out / (np.abs(out).max() + 1e-9)


def _phase(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Instantaneous phase of a (possibly time-varying) frequency, wrapped to [0, 2 pi) in float32."""
    cycles = np.cumsum(np.broadcast_to(freq, (n,)), dtype=np.float64) / sr
    return (2 * np.pi * (cycles - np.floor(cycles))).astype(np.float32)


def _synth(kind: Kind, f0: float, t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    # Long on purpose: one short branch per sound reads as a table; split, the draws' order would be harder to see.
    """The kind's sound at base pitch `f0`; `t` is float32 seconds (float32 keeps numpy's SIMD paths)."""
    n, dur = t.size, t.size / sr
    offset = float(rng.uniform(0.0, 0.1))
    sound = kind.sound
    if sound == "barking":  # short harmonic bursts with a falling pitch
        starts = offset + np.arange(0, dur, 0.38 + rng.uniform(-0.04, 0.04))
        local = np.mod(t - offset, 0.38)
        freq = f0 * (1.3 - 0.6 * np.clip(local / 0.12, 0, 1))
        return _envelope(t, starts, 0.12) * _harmonics(_phase(freq, n, sr), (1, 0.7, 0.5, 0.3))
    if sound == "meowing":  # a long rising-then-falling glide
        starts = offset + np.arange(0, dur, 0.95)
        local = np.mod(t - offset, 0.95) / 0.75
        freq = f0 * (1.0 + 0.35 * np.sin(np.pi * np.clip(local, 0, 1)))
        return _envelope(t, starts, 0.75, attack=0.08) * _harmonics(_phase(freq, n, sr), (1, 0.5, 0.25))
    if sound == "singing":  # slow glides with vibrato, continuous
        freq = f0 * (1.0 + 0.3 * np.sin(2 * np.pi * 0.6 * t + offset * 10) + 0.02 * np.sin(2 * np.pi * 5 * t))
        return (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) * _harmonics(_phase(freq, n, sr), (1, 0.3))
    if sound == "chirping":  # many short upward sweeps
        period = 0.11 + float(rng.uniform(-0.01, 0.01))
        starts = offset + np.arange(0, dur, period)
        local = np.mod(t - offset, period)
        freq = f0 * (1.0 + 0.5 * np.clip(local / 0.04, 0, 1))
        return _envelope(t, starts, 0.04, attack=0.003) * np.sin(_phase(freq, n, sr))
    if sound == "rustling":  # band-limited noise, swelling
        swell = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 0.8 * t + offset * 20))
        return swell * _band_noise(rng, n, sr, 0.6 * f0, 6 * f0)
    if sound == "bubbling":  # random short blips rising in pitch
        starts = np.sort(rng.uniform(0, dur - 0.03, 24))
        local = np.zeros_like(t)
        for start in starts.tolist():
            inside = (t >= start) & (t < start + 0.03)
            local[inside] = t[inside] - start
        freq = f0 * (1.0 + 20 * local)
        return _envelope(t, starts, 0.03, attack=0.002) * np.sin(_phase(freq, n, sr))
    if sound == "neighing":  # descending whinny with fast vibrato
        local = np.mod(t - offset, 1.0)
        freq = f0 * (1.4 - 0.6 * local) * (1 + 0.08 * np.sin(2 * np.pi * 11 * t))
        starts = offset + np.arange(0, dur, 1.0)
        return _envelope(t, starts, 0.85, attack=0.03) * _harmonics(_phase(freq, n, sr), (1, 0.6, 0.4, 0.2))
    if sound == "mooing":  # long low tone, slow attack, slight fall
        freq = f0 * (1.05 - 0.1 * np.clip((t - offset) / 1.4, 0, 1))
        env = _envelope(t, np.array([offset]), 1.5, attack=0.25)
        return env * _harmonics(_phase(freq, n, sr), (1, 0.8, 0.5, 0.35, 0.2))
    if sound == "foghorn":  # steady low square-ish blast
        phase = _phase(f0, n, sr)
        env = _envelope(t, np.array([offset]), dur - offset, attack=0.1)
        return env * np.sign(np.sin(phase)) * 0.6 + env * 0.4 * np.sin(phase)
    if sound == "engine":  # low harmonic drone pulsing at the engine's firing rate
        rpm = float(rng.uniform(25, 35))
        drone = _harmonics(_phase(f0, n, sr), (1, 0.8, 0.6, 0.5, 0.4, 0.3))
        return (0.6 + 0.4 * np.sin(2 * np.pi * rpm * t)) * drone / 2
    if sound == "honking":  # two-tone square blasts
        starts = offset + np.array([0.0, 0.6, 1.2])
        phase = _phase(f0, n, sr)
        chord = np.sign(np.sin(phase)) + np.sign(np.sin(phase * 1.26))
        return _envelope(t, starts, 0.4, attack=0.01) * chord * 0.5
    if sound == "ringing":  # bell: inharmonic partials decaying
        out = np.zeros_like(t)
        for start in (offset, offset + 0.9):
            local = np.clip(t - start, 0, None)
            ring = sum(w * np.sin(2 * np.pi * f0 * r * local) for w, r in ((1, 1.0), (0.5, 2.76), (0.3, 5.4)))
            out += (t >= start) * np.exp(-local * 4.0) * ring
        return out
    if sound == "ticking":  # sharp clicks, tick and tock
        out = np.zeros_like(t)
        for i, start in enumerate((offset + np.arange(0, dur, 0.5)).tolist()):
            local = np.clip(t - start, 0, None)
            pitch = f0 if i % 2 == 0 else f0 * 0.8
            out += (t >= start) * np.exp(-local * 300.0) * np.sin(2 * np.pi * pitch * local)
        return out
    if sound == "drumming":  # low thumps with a pitch drop and a noise hit
        out = np.zeros_like(t)
        hit = _band_noise(rng, n, sr, 100, 2000)
        for start in (offset + np.arange(0, dur, 0.25)).tolist():
            local = np.clip(t - start, 0, None)
            freq_phase = (
                2 * np.pi * f0 * (local + 1.5 * (1 - np.exp(-local * 30)) / 30)
            )  # f0 * (1 + 1.5e^-30t)
            out += (t >= start) * (np.exp(-local * 12) * np.sin(freq_phase) + 0.3 * np.exp(-local * 60) * hit)
        return out
    if sound == "buzzing":  # sawtooth with a slow wobble
        phase = _phase(f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t + offset * 30)), n, sr)
        return 0.7 * (np.mod(phase / (2 * np.pi), 1.0) * 2 - 1)
    if sound == "roaring":  # low broadband rumble, growing
        rumble = _band_noise(rng, n, sr, 40, 3 * f0)
        return (0.4 + 0.6 * t / dur) * (0.7 * rumble + 0.3 * _harmonics(_phase(f0, n, sr), (1, 0.5)))
    raise ValueError(f"no synthesiser for sound {sound!r}")


def render_audio(kind: Kind, rng: np.random.Generator, world: Any) -> np.ndarray:
    sr = int(world.sample_rate)
    n = int(round(sr * float(world.audio_seconds)))
    t = (np.arange(n) / sr).astype(np.float32)
    f0 = kind.pitch_hz * (1.0 + float(rng.uniform(-world.pitch_jitter, world.pitch_jitter)))
    wave = _synth(kind, f0, t, sr, rng)
    wave = wave / (np.abs(wave).max() + 1e-9)
    volume = world.volume * (1.0 + float(rng.uniform(-world.volume_jitter, world.volume_jitter)))
    wave = volume * wave + world.audio_noise_std * rng.standard_normal(n, dtype=np.float32)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)
