"""Memory per rank of ZeRO-0, ZeRO-2 and ZeRO-3 alignment on CPU (2 gloo processes, torchrun).

The real worker (`xib.train.worker` via `run_alignment`) trains a paper-size Q-Former projection
(768 wide, 12 layers, 32 queries: about 100M trainable parameters) on random cached features with a
tiny frozen LLM, for a few steps per stage; each rank reports its peak RSS and the optimizer state
it holds (parameters + Adam moments of its partition).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_zero_memory.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

PAPER_QFORMER = [
    "model.projection.num_query_tokens=32",
    "model.projection.qformer_hidden=768",
    "model.projection.qformer_layers=12",
    "model.projection.qformer_heads=12",
    "model.projection.qformer_intermediate=3072",
    "model.projection.cross_attention_frequency=2",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--stages", default="0,2,3")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache/torch_extensions"))
    from test_train_fixtures import make_world

    from xib.config import load_config
    from xib.train.launch import ProgressView, run_alignment

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["XIB_ROOT"] = str(root)
        base = make_world(root)
        base = [o for o in base if not o.startswith("model.projection.")] + PAPER_QFORMER
        for stage in [int(s) for s in args.stages.split(",")]:
            cfg = load_config(
                base
                + [
                    f"train.zero_stage={stage}",
                    f"train.steps={args.steps}",
                    "train.micro_batch_size=2",
                    "train.eval_every=0",
                    f"train.checkpoint_every={args.steps}",
                    "train.launcher=torchrun",
                ]
            )
            events: list[dict] = []
            original = ProgressView.line

            def capture(self, text, _events=events, _orig=original):  # noqa: ANN001
                _orig(self, text)
                _events[:] = self.events

            ProgressView.line = capture  # type: ignore[method-assign]
            try:
                status = run_alignment(cfg, "image", quiet=True, track=False)
            finally:
                ProgressView.line = original  # type: ignore[method-assign]
            memory = next(e["ranks"] for e in events if e.get("event") == "memory")
            trainable = next(e["trainable"] for e in events if e.get("event") == "start")
            results[stage] = {"status": status, "trainable": trainable, "ranks": memory}
            print(
                f"ZeRO-{stage}: {trainable:,} trainable; "
                + "; ".join(
                    f"rank {r}: RSS {m['rss_mb']:.0f} MB (peak {m['peak_rss_mb']:.0f}), optimizer state held {m['optimizer_held_mb']:.0f} MB"
                    for r, m in enumerate(memory)
                ),
                flush=True,
            )
            import shutil

            shutil.rmtree(root / "artifacts" / "align", ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
