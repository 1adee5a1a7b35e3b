"""Cost of the safe intake: ingest and validate throughput per modality before and after the checks
(ratio in one run), and peak memory of ingesting 10x the items against 1x (streaming).

Per modality, N source files in the variants real data sets hold (image: 64x48 JPEG; audio: 2 s
22.05 kHz stereo 24-bit WAV, converted to 16 kHz mono 16-bit; pc: Cap3D 8192x6 float32 NPZ, xyz kept;
video: 8-frame 32x32 MP4):
  ingest before  decode + convert + encode, no checks (what ingest did per item before issue 14)
  ingest after   xib.data.ingest.convert_medium: safe read, the shared rules (sniff, header limits,
                 full decode, values), convert, and `xib validate`'s row check of the stored bytes
  validate before  sha256 + decode (the old media check's core)
  validate after   xib.data.validate.check_medium (sha256 + the shared rules + data-set conformance)
Times are CPU seconds of this process (`time.process_time`), the two variants alternated item by item,
so the shared machine's load hits both alike. Peak memory: `xib ingest` of an AudioCaps layout with
M and 10 M clips, each in a fresh process, max RSS from `os.wait4`.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_intake.py [--items 60] [--memory-items 60]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def sources(modality: str, n: int, folder: Path) -> list[Path]:
    from data_fixtures import clip, cloud, jpeg, npz, sound

    folder.mkdir(parents=True, exist_ok=True)
    make = {
        "image": lambda i: (jpeg(64, 48, seed=i), "jpg"),
        "audio": lambda i: (sound(2.0, 22050, 2, "PCM_24", "WAV"), "wav"),
        "pc": lambda i: (npz(cloud(8192, 6, seed=i)), "npz"),
        "video": lambda i: (clip(frames=8, side=32), "mp4"),
    }[modality]
    paths = []
    for i in range(n):
        data, ext = make(i)
        path = folder / f"item{i:05d}.{ext}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def before_ingest(modality: str, path: Path, icfg) -> bytes:
    """Decode, convert, encode: no sniffing, header limits, integrity or value checks."""
    import soundfile as sf

    from xib.data import media

    data = path.read_bytes()
    if modality == "image":
        media.decode_image(data)
        return data
    if modality == "audio":
        from scipy.signal import resample_poly

        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        mono = frames.mean(axis=1)
        return media.encode_audio(np.clip(resample_poly(mono, 320, 441), -1, 1), 16000)
    if modality == "pc":
        points = np.load(io.BytesIO(data), allow_pickle=False)["arr_0"][:, :3].astype(np.float32)
        return media.encode_pc(points)
    media.decode_video_meta(data)
    return data


def before_validate(modality: str, data: bytes) -> None:
    from xib.data import media
    from xib.data.manifest import sha256

    sha256(data)
    media.decode(modality, data)


def throughput(cfg, items: int, work: Path) -> list[dict]:
    import pandas as pd

    from xib.data.ingest import SourceRow, convert_medium
    from xib.data.manifest import sha256
    from xib.data.validate import check_medium

    rows = []
    for modality in ("image", "audio", "pc", "video"):
        paths = sources(modality, items, work / modality)
        warm = SourceRow(0, "bench.csv", "w", "w", "c", (paths[0].name,), modality)
        before_ingest(modality, paths[0], cfg.data.ingest)  # imports (scipy, av, PIL) outside the timing
        convert_medium(modality, paths[0], warm, cfg, "w")
        t_before = t_after = v_before = v_after = 0.0
        stored = []
        for i, path in enumerate(paths):
            t0 = time.process_time()
            before_ingest(modality, path, cfg.data.ingest)
            t1 = time.process_time()
            row = SourceRow(i + 1, "bench.csv", f"b{i}", f"b{i}", "c", (path.name,), modality)
            converted, _ = convert_medium(modality, path, row, cfg, f"b{i}")
            t2 = time.process_time()
            t_before, t_after = t_before + t1 - t0, t_after + t2 - t1
            stored.append((converted.data, {"checksum": sha256(converted.data), **converted.meta}))
        for data, meta in stored:
            series = pd.Series(
                {c: None for c in ("width", "height", "sample_rate", "duration_s", "frames", "points")} | meta
            )
            t0 = time.process_time()
            before_validate(modality, data)
            t1 = time.process_time()
            check_medium(modality, series, data, cfg.data.validate, cfg.data.limits)
            t2 = time.process_time()
            v_before, v_after = v_before + t1 - t0, v_after + t2 - t1
        rows.append(
            {
                "modality": modality,
                "items": items,
                "ingest_before": items / t_before,
                "ingest_after": items / t_after,
                "validate_before": items / v_before,
                "validate_after": items / v_after,
            }
        )
    return rows


def audiocaps(folder: Path, clips: int) -> None:
    from data_fixtures import sound

    (folder / "audio" / "train").mkdir(parents=True, exist_ok=True)
    data = sound(2.0, 22050, 2, "PCM_24", "WAV")
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        for i in range(clips):
            writer.writerow([i, f"clip{i:07d}", 30, f"sound number {i}"])
            (folder / "audio" / "train" / f"clip{i:07d}_30.wav").write_bytes(data)


def peak_rss_mb(clips: int, work: Path) -> tuple[float, float]:
    folder = work / f"ac{clips}"
    audiocaps(folder, clips)
    env = {**os.environ, "XIB_ROOT": str(work / f"root{clips}")}
    cmd = [
        sys.executable, "-m", "xib.cli", "ingest", "data.ingest.format=audiocaps",
        f"data.ingest.path={folder / 'train.csv'}", f"data.ingest.media_dir={folder / 'audio'}",
        "data.ingest.split=train",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"ingest of {clips} clips failed ({status})")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=60, help="source files per modality (throughput)")
    parser.add_argument(
        "--memory-items", type=int, default=60, help="AudioCaps clips at 1x (10x is 10 times)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XIB_ROOT"] = tmp
        from xib.config import load_config

        cfg = load_config()
        print(
            "| modality | items | ingest items/s before | after | after/before | validate items/s before | after | after/before |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in throughput(cfg, args.items, Path(tmp) / "src"):
            print(
                f"| {r['modality']} | {r['items']} | {r['ingest_before']:.0f} | {r['ingest_after']:.0f} | "
                f"{r['ingest_after'] / r['ingest_before']:.2f} | {r['validate_before']:.0f} | "
                f"{r['validate_after']:.0f} | {r['validate_after'] / r['validate_before']:.2f} |"
            )
        small, t_small = peak_rss_mb(args.memory_items, Path(tmp))
        large, t_large = peak_rss_mb(10 * args.memory_items, Path(tmp))
        print(
            f"\npeak RSS of `xib ingest` (AudioCaps, 2 s 22.05 kHz stereo 24-bit clips): "
            f"{args.memory_items} clips {small:.0f} MB ({t_small:.1f} s), {10 * args.memory_items} clips "
            f"{large:.0f} MB ({t_large:.1f} s): 10x / 1x = {large / small:.3f}"
        )


if __name__ == "__main__":
    main()
