"""World generation cost: per-item render and encode time per modality (one core), and the speed-up
of `workers=2` over `workers=1` for the whole `generate_world`, measured in the same run.

    .venv/bin/python benchmarks/bench_world.py [items_per_modality]   (default 1000)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    import numpy as np

    from xib.config import load_config
    from xib.data import media
    from xib.data.generate import MODALITIES, generate_world, item_rng
    from xib.data.render import render
    from xib.data.world import KINDS

    items = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    world = load_config([]).data.world
    print("| modality | render ms/item | encode ms/item | bytes/item | items/s on one core |")
    print("|---|---|---|---|---|")
    for modality in MODALITIES:
        n = 160
        t0 = time.process_time()
        arrays = [render(KINDS[i % len(KINDS)], modality, item_rng(0, modality, i), world) for i in range(n)]
        t1 = time.process_time()
        blobs = [
            media.encode(modality, a, sample_rate=world.sample_rate, fps=world.video_fps) for a in arrays
        ]
        t2 = time.process_time()
        per = (t2 - t0) / n
        print(
            f"| {modality} | {1e3 * (t1 - t0) / n:.2f} | {1e3 * (t2 - t1) / n:.2f} | "
            f"{int(np.mean([len(b) for b in blobs]))} | {1 / per:.0f} |"
        )
    walls = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as root:
            cfg = load_config([f"paths.root={root}", f"data.world.items_per_modality={items}",
                               f"data.world.workers={workers}"])  # fmt: skip
            t0 = time.perf_counter()
            summary = generate_world(cfg, progress=False, corpus=False)
            walls[workers] = time.perf_counter() - t0
    total = 4 * items
    print(
        f"\ngenerate_world, {items} items per modality ({total} items, {summary['bytes']['total'] / 1e6:.0f} MB):"
    )
    for workers, wall in walls.items():
        print(f"  workers={workers}: {wall:.1f} s wall, {total / wall:.0f} items/s")
    print(
        f"  speed-up workers=2 / workers=1: {walls[1] / walls[2]:.2f}x; load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
