"""Forward time per sample of each demo encoder: batched (as the features stage runs) vs one at a time.

    .venv/bin/python benchmarks/encoders.py [--batch 32] [--repeats 3] [--threads 2] [hydra overrides]

Media are random arrays of the demo world's shapes (image 32x32, video 5x32x32, audio 2 s at
16 kHz, pc 8192 points); encoders are built from the demo config (random init: the time does not
depend on the weights). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def sample_media(modality: str, count: int, cfg) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    world = cfg.data.world
    if modality == "image":
        return [
            rng.integers(0, 256, (world.image_size, world.image_size, 3), dtype=np.uint8)
            for _ in range(count)
        ]
    if modality == "video":
        shape = (world.video_frames, world.video_size, world.video_size, 3)
        return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    if modality == "audio":
        samples = int(world.audio_seconds * world.sample_rate)
        return [(0.1 * rng.standard_normal(samples)).astype(np.float32) for _ in range(count)]
    return [rng.standard_normal((int(world.points), 3)).astype(np.float32) for _ in range(count)]


def per_sample_ms(encoder, items: list[np.ndarray], batch: int, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(preprocess, forward) milliseconds per sample, best of `repeats`."""
    best_pre, best_fwd = float("inf"), float("inf")
    with torch.no_grad():
        encoder(encoder.preprocess(items[:batch]))  # warm-up
        for _ in range(repeats):
            pre = fwd = 0.0
            for start in range(0, len(items), batch):
                t0 = time.perf_counter()
                inputs = encoder.preprocess(items[start : start + batch])
                t1 = time.perf_counter()
                encoder(inputs)
                t2 = time.perf_counter()
                pre, fwd = pre + t1 - t0, fwd + t2 - t1
            best_pre, best_fwd = min(best_pre, pre), min(best_fwd, fwd)
    return 1000 * best_pre / len(items), 1000 * best_fwd / len(items)


def main() -> None:
    from xib.config import load_config
    from xib.models.encoders import build_encoder

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(["paths.root=/nonexistent-benchmark-root", *overrides])
    print(
        f"| encoder | family | params | tokens [V, N, D] | preprocess ms/sample | forward ms/sample, batch "
        f"{args.batch} | forward ms/sample, batch 1 | batched speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for modality in ("image", "video", "audio", "pc"):
        encoder = build_encoder(modality, cfg.model.encoders[modality])
        items = sample_media(modality, args.batch, cfg)
        pre, batched = per_sample_ms(encoder, items, args.batch, args.repeats)
        _, single = per_sample_ms(encoder, items, 1, args.repeats)
        shape = tuple(encoder(encoder.preprocess(items[:1])).features.shape[1:])
        params = sum(p.numel() for p in encoder.parameters())
        print(
            f"| {modality} | {encoder.family} | {params / 1e3:.0f}k | {list(shape)} | {pre:.2f} | {batched:.2f} | "
            f"{single:.2f} | {single / batched:.1f}x |"
        )


if __name__ == "__main__":
    main()
