"""Evaluation throughput: the batched evaluator against one sample at a time, in one run.

    .venv/bin/python benchmarks/eval_throughput.py [--items 24] [--discrn 24] [--batch 32] [--threads 2]

Builds a project of the demo's sizes under a temporary folder (an LLM of the demo LLM's shape, the
demo projection config, feature caches, instruction and DisCRn files), then runs every benchmark of
`xib eval` (captioning, QA, classification, DisCRn with both scorings and every baseline) twice on
the same items: with `eval.batch_size=<batch>` (first, so it pays the cold start) and with
`eval.batch_size=1`. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=24, help="items per modality (x3 tasks)")
    parser.add_argument("--discrn", type=int, default=24, help="DisCRn items")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from xib.config import load_config
    from xib.eval.run import build_runner, checkpoint_dirs, evaluate
    from xib.eval.testing import make_tiny_project

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="xib-eval-bench-") as root:
        os.environ["XIB_ROOT"] = root
        cfg = load_config(
            [
                "eval.modalities=[image,pc]",
                "eval.discrn.pairs=[image_pc]",
                f"eval.threads={args.threads}",
                "eval.max_items_per_task=0",
            ]
        )
        arch = {"hidden_size": 128, "layers": 4, "heads": 4, "intermediate_size": 344}  # the demo LLM's shape
        make_tiny_project(cfg, items=args.items, discrn_items=args.discrn, llm_arch=arch)
        checkpoints = checkpoint_dirs(cfg)
        rows = []
        results = {}
        for batch in (args.batch, 1):
            runner = build_runner(cfg, checkpoints, batch_size=batch)
            runner.progress = False
            start = time.perf_counter()
            metrics, report = evaluate(cfg, runner)
            seconds = time.perf_counter() - start
            results[batch] = metrics
            items = sum(t["items"] for t in report["timings"].values() if isinstance(t, dict))
            rows.append((batch, items, seconds))
        base = rows[1][2]
        print(f"\n{platform.processor() or platform.machine()}, torch threads {args.threads}\n")
        print("| evaluator | batch size | benchmark items | seconds | items/s | speed-up |")
        print("|---|---:|---:|---:|---:|---:|")
        for batch, items, seconds in rows:
            name = "batched" if batch > 1 else "one at a time"
            print(
                f"| {name} | {batch} | {items} | {seconds:.1f} | {items / seconds:.1f} | {base / seconds:.2f}x |"
            )
        logit_keys = [
            k for k in results[1] if "logits" in k or k.startswith("classify/") and k.endswith("/accuracy")
        ]
        same = all(abs(results[1][k] - results[args.batch][k]) < 1e-9 for k in logit_keys)
        print(f"\nloss-ranked metrics identical in both modes ({len(logit_keys)} metrics): {same}")


if __name__ == "__main__":
    main()
