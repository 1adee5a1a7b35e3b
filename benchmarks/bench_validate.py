"""Validation throughput on CPU, per modality, at the world's default media sizes.

Writes N items per modality with xib.data.media (32x32 PNG, 2 s 16 kHz WAV, 8192-point NPY, 5-frame
32x32 MP4) into tar shards, runs `xib.data.validate.validate` on them, and, in the same run, compares
reading the media by streaming each shard once (`iter_items`) with the naive way (open the tar and look
the member up for every row).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_validate.py [--items 300]
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path


def naive_read(df, base: Path) -> int:
    total = 0
    for uri in df["uri"]:
        shard, member = uri.split("#")
        with tarfile.open(base / shard) as tar:
            total += len(tar.extractfile(member).read())
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=300, help="items per modality")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XIB_ROOT"] = tmp
        from xib.config import load_config
        from xib.data.manifest import find_manifests, read_manifest
        from xib.data.sample import write_sample_corpus
        from xib.data.shards import iter_items
        from xib.data.validate import validate

        cfg = load_config()
        t0 = time.perf_counter()
        write_sample_corpus(
            Path(tmp) / "data",
            cfg.data.world,
            items=dict.fromkeys(("image", "pc", "audio", "video"), args.items),
        )
        print(f"wrote {4 * args.items} items in {time.perf_counter() - t0:.1f} s")
        report = validate(cfg)
        print(
            f"GX start-up (import + context): {report['gx_startup_seconds']:.2f} s (once per run, not counted below)"
        )
        print(
            f"{'modality':<8} {'items':>6} {'table s':>8} {'media s':>8} {'items/s':>9} {'media-only items/s':>19}"
        )
        for modality, m in sorted(report["modalities"].items()):
            media_rate = m["items"] / m["media_seconds"] if m["media_seconds"] else float("inf")
            print(
                f"{modality:<8} {m['items']:>6} {m['table_seconds']:>8.3f} {m['media_seconds']:>8.3f} "
                f"{m['items_per_s']:>9.0f} {media_rate:>19.0f}"
            )
        print(f"total {report['items']} items in {report['seconds']:.2f} s (incl. GX start-up)")

        paths = find_manifests(Path(tmp) / "data")
        frames = [(p, read_manifest(p)) for p in paths]
        t0 = time.perf_counter()
        streamed = sum(len(data) for p, df in frames for _, data in iter_items(df, p.parent))
        t_stream = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = sum(naive_read(df, p.parent) for p, df in frames)
        t_naive = time.perf_counter() - t0
        assert streamed == naive
        n = sum(len(df) for _, df in frames)
        print(
            f"reading {n} media: iter_items {n / t_stream:.0f} items/s, naive tar-per-row {n / t_naive:.0f} items/s "
            f"(x{t_naive / t_stream:.1f})"
        )


if __name__ == "__main__":
    main()
