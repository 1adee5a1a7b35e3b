"""Alignment step time and memory on model=smollm2 (a real 135M Llama), ZeRO-2 against ZeRO-3, and the
same step's shapes on the 7B configuration on the meta device.

Part 1 runs the real worker (`run_alignment`: torchrun, 2 gloo processes on CPU) for a few steps per
ZeRO stage on a project whose world, features and converted SmolLM2 already exist (the pipeline in
README "A real pretrained Llama"), in a scratch root that links to them. Part 2 builds X-InstructBLIP
with Vicuna-7B and the paper's Q-Former on the meta device (no memory, no weights), packs a batch of
the same shape (micro-batch, prompt and answer lengths) and runs the embedding and the LLM trunk,
printing the tensor shapes and the per-GPU memory the ZeRO stages imply for its trainable part.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/align_smollm2.py --source /tmp/paper_smol [--steps 8]
    .venv/bin/python benchmarks/align_smollm2.py --meta-only
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

BASE = ["model=smollm2", "data.world.items_per_modality=400"]


def smollm2_stages(source: Path, steps: int, stages: list[int], modality: str) -> dict:
    from xib.config import load_config
    from xib.train.launch import ProgressView, run_alignment

    results = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "artifacts").mkdir()
        os.symlink(source / "data", root / "data")
        for part in ("features", "smollm2", "bootstrap"):
            os.symlink(source / "artifacts" / part, root / "artifacts" / part)
        os.environ["XIB_ROOT"] = str(root)
        for stage in stages:
            cfg = load_config(
                BASE
                + [
                    f"train.zero_stage={stage}",
                    f"train.steps={steps}",
                    f"train.steps_by_modality.{modality}={steps}",  # the demo's table names image
                    "train.micro_batch_size=4",
                    "train.log_every=1",
                    "train.eval_every=0",
                    f"train.checkpoint_every={steps}",
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
                status = run_alignment(cfg, modality, quiet=True, track=False)
            finally:
                ProgressView.line = original  # type: ignore[method-assign]
            steps_seen = [e for e in events if e.get("event") == "step"]
            # the first step includes ZeRO's setup and warm-up: the rest are the steady state
            rates = [e["train/samples_per_s"] for e in steps_seen[1:]]
            batch = int(cfg.train.micro_batch_size) * int(cfg.train.procs)
            start = next(e for e in events if e.get("event") == "start")
            results[stage] = {
                "status": status,
                "trainable": start.get("trainable"),
                "step_s": [round(batch / r, 3) for r in rates],
                "ranks": next(e["ranks"] for e in events if e.get("event") == "memory"),
            }
            print(f"ZeRO-{stage}: {json.dumps(results[stage])}", flush=True)
            import shutil

            shutil.rmtree(root / "artifacts" / "align", ignore_errors=True)
    return results


def meta_7b(micro_batch: int, prompt_tokens: int, answer_tokens: int, gpus: int) -> dict:
    """The 7B step's shapes on the meta device, and what ZeRO-2/3 leave per GPU of its trainable part."""
    import torch
    from omegaconf import OmegaConf
    from test_model_7b_meta import VICUNA_7B
    from transformers import LlamaConfig, LlamaForCausalLM

    from xib.models.config import ModelConfig
    from xib.models.encoders import output_width
    from xib.models.projectors import build_projection
    from xib.models.testing import build_word_tokenizer
    from xib.models.xinstructblip import MediaInput, XInstructBLIP

    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf/model/vicuna7b.yaml")
    )
    width = output_width(cfg.encoders.image)
    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(**VICUNA_7B))
        projection = build_projection(cfg.projection, width, VICUNA_7B["hidden_size"])
    words = [f"w{i}" for i in range(64)]
    tokenizer = build_word_tokenizer(words)
    cfg.prompt.template = "{prompt}"
    model = XInstructBLIP(llm, tokenizer, {"image": projection}, cfg)
    prompt = " ".join(words[:prompt_tokens])
    answer = " ".join(words[:answer_tokens])
    examples = [
        ([MediaInput("image", torch.zeros(1, 257, width)), " " + prompt], answer) for _ in range(micro_batch)
    ]
    batch = model.collate(examples)
    media = batch.media["image"]
    # masks are left out: building attention masks inspects values, which meta tensors do not have
    soft = projection(media.features.to("meta"), None, None, None)
    embeds = model.input_embeddings(batch.input_ids.to("meta"))
    start = int(media.starts[0])
    embeds[:, start : start + soft.shape[1]] = soft
    hidden = model.llm.base_model(inputs_embeds=embeds).last_hidden_state
    trainable = sum(p.numel() for p in projection.parameters())
    frozen = sum(p.numel() for p in llm.parameters())
    gb = 1024**3
    # bf16 weights and gradients, fp32 master copy + Adam moments (12 bytes) for what trains
    per_gpu = {
        "zero2": {
            "frozen_llm_bf16_gb": frozen * 2 / gb,
            "trainable_bf16_gb": trainable * 2 / gb,
            "grads_bf16_gb": trainable * 2 / gb / gpus,
            "optimizer_fp32_gb": trainable * 12 / gb / gpus,
        },
        "zero3": {
            "frozen_llm_bf16_gb": frozen * 2 / gb,
            "trainable_bf16_gb": trainable * 2 / gb / gpus,
            "grads_bf16_gb": trainable * 2 / gb / gpus,
            "optimizer_fp32_gb": trainable * 12 / gb / gpus,
        },
    }
    return {
        "input_ids": list(batch.input_ids.shape),
        "features": [micro_batch, 257, width],
        "soft_tokens": list(soft.shape),
        "inputs_embeds": list(embeds.shape),
        "llm_hidden": list(hidden.shape),
        "frozen_params": frozen,
        "trainable_params": trainable,
        "gpus": gpus,
        "per_gpu": {k: {n: round(v, 3) for n, v in d.items()} for k, d in per_gpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=Path("/tmp/paper_smol"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--stages", default="2,3")
    parser.add_argument("--modality", default="image")
    parser.add_argument("--meta-only", action="store_true")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache/torch_extensions"))
    out: dict = {}
    if not args.meta_only:
        out["smollm2"] = smollm2_stages(
            args.source, args.steps, [int(s) for s in args.stages.split(",")], args.modality
        )
    # the demo/smollm2 image batch: 16 per process, instruction about 12 tokens, answer about 6
    out["vicuna7b_meta"] = meta_7b(micro_batch=16, prompt_tokens=12, answer_tokens=6, gpus=args.gpus)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
