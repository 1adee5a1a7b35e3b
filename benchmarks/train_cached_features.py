"""Alignment step with cached features vs running the frozen encoder every step (the reference way).

Same run, same config (conf/model/demo.yaml encoders and projection, train micro batch), same
items: the cached path reads features from the FeatureStore; the reference path reads the media
from the tar shard, decodes it, preprocesses it and runs the frozen encoder, every step. Both then
do the same projection forward/backward and AdamW step. LLM: a Llama stand-in of the demo size
(hidden 128, 4 layers), saved with save_pretrained. One process, one thread per default.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_cached_features.py [--modalities image,pc,audio,video]
    # a ViT-B/16-sized image encoder at 224 px (closer to the paper's proportions), micro batch 4:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_cached_features.py --modalities image --items 16 \
        --steps 3 --override data.world.image_size=224 --override model.encoders.image.arch.image_size=224 \
        --override model.encoders.image.arch.patch_size=16 --override model.encoders.image.arch.hidden_size=768 \
        --override model.encoders.image.arch.num_hidden_layers=12 --override model.encoders.image.arch.num_attention_heads=12 \
        --override model.encoders.image.arch.intermediate_size=3072 --override train.micro_batch_size=4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def random_media(modality: str, rng, cfg):  # noqa: ANN001
    import numpy as np

    w = cfg.data.world
    if modality == "image":
        return rng.integers(0, 255, (w.image_size, w.image_size, 3), dtype=np.uint8)
    if modality == "video":
        return rng.integers(0, 255, (w.video_frames, w.video_size, w.video_size, 3), dtype=np.uint8)
    if modality == "audio":
        return (rng.standard_normal(int(w.sample_rate * w.audio_seconds)) * 0.1).astype(np.float32)
    return rng.standard_normal((w.points, 3)).astype(np.float32)


def write_items(root: Path, modality: str, n: int, cfg) -> Path:  # noqa: ANN001
    import numpy as np
    import pandas as pd

    from xib.data.manifest import sha256, write_manifest
    from xib.data.media import encode
    from xib.data.shards import ShardWriter

    folder = root / "data" / "world" / modality / "train"
    rng = np.random.default_rng(0)
    rows = []
    ext = {"image": "png", "video": "mp4", "audio": "wav", "pc": "npy"}[modality]
    with ShardWriter(folder, max_items=cfg.data.world.shard_items) as writer:
        for i in range(n):
            data = encode(modality, random_media(modality, rng, cfg))
            item_id = f"{modality}-{i:06d}"
            uri = writer.write(f"{item_id}.{ext}", data)
            rows.append(
                {
                    "id": item_id,
                    "entity_id": f"e{i}",
                    "kind": "cube",
                    "modality": modality,
                    "uri": uri,
                    "caption": "a red cube",
                    "split": "train",
                    "source": "world",
                    "checksum": sha256(data),
                }
            )
    return write_manifest(pd.DataFrame(rows), folder / "manifest.parquet")


def bench_modality(
    root: Path, llm: Path, modality: str, items: int, steps: int, overrides: list[str]
) -> dict:
    import torch

    from xib.config import load_config
    from xib.data.manifest import read_manifest
    from xib.data.media import decode
    from xib.data.shards import read_media_bytes
    from xib.models.encoders import build_encoder
    from xib.train import model_setup
    from xib.train.features import FeatureStore, build_cache
    from xib.train.loop import param_groups

    cfg = load_config([f"modality={modality}", f"model.llm.path={llm}", "modality.init_from=", *overrides])
    micro = int(cfg.train.micro_batch_size)
    manifest = write_items(root, modality, items, cfg)
    encoder = build_encoder(modality, cfg.model.encoders[modality])
    t0 = time.perf_counter()
    store = FeatureStore(build_cache(cfg, modality, "train", encoder=encoder))
    cache_s = time.perf_counter() - t0
    df = read_manifest(manifest).set_index("id")
    torch.manual_seed(0)
    setup = model_setup.build(cfg, modality, store.feature_dim, torch.device("cpu"))
    optimizer = torch.optim.AdamW(param_groups(setup.objective, 0.05), lr=1e-4, fused=True)  # as the worker
    ids = store.ids()

    def batch_ids(step: int) -> list[str]:
        return [ids[(step * micro + j) % len(ids)] for j in range(micro)]

    def record(item_id: str, features, mask) -> dict:  # noqa: ANN001
        return {
            "item_id": item_id,
            "instruction": "describe it.",
            "answer": "a red cube",
            "caption": "a red cube",
            "features": features,
            "mask": mask,
        }

    def cached(step: int) -> list[dict]:
        return [record(i, *store.get(i)) for i in batch_ids(step)]

    def online(step: int) -> list[dict]:  # the reference way: media -> decode -> encoder, every step
        chosen = batch_ids(step)
        arrays = [decode(modality, read_media_bytes(df.loc[i, "uri"], manifest.parent)) for i in chosen]
        with torch.inference_mode():
            out = encoder(encoder.preprocess(arrays))
        return [record(i, f.clone(), m.clone()) for i, f, m in zip(chosen, out.features, out.mask)]

    def train_step(records: list[dict]) -> None:
        out = setup.objective(setup.collate(records))
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    timings = {}
    for name, fetch in (("cached", cached), ("encoder_every_step", online)):
        train_step(fetch(0))  # warm-up
        start = time.perf_counter()
        for step in range(1, steps + 1):
            train_step(fetch(step))
        timings[name] = (time.perf_counter() - start) / steps * 1000
    ratio = timings["encoder_every_step"] / timings["cached"]
    print(
        f"{modality}: cached {timings['cached']:.1f} ms/step, encoder every step "
        f"{timings['encoder_every_step']:.1f} ms/step -> {ratio:.2f}x (cache built in {cache_s:.1f} s "
        f"for {items} items, micro batch {micro})",
        flush=True,
    )
    return {
        **{k: round(v, 1) for k, v in timings.items()},
        "speedup": round(ratio, 2),
        "cache_build_s": round(cache_s, 1),
        "micro_batch": micro,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modalities", default="image,pc,audio,video")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--override", action="append", default=[], help="Hydra override, repeatable")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from test_train_fixtures import COLOURS, KINDS, save_tiny_llm

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["XIB_ROOT"] = str(root)
        words = ["image:", "3d:", "audio:", "video:", "describe", "it.", "a", *KINDS, *COLOURS]
        llm = save_tiny_llm(root / "llm", words, hidden=128, layers=4)
        for modality in args.modalities.split(","):
            results[modality] = bench_modality(root, llm, modality, args.items, args.steps, args.override)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
