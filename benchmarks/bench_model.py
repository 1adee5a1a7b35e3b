"""Model benchmarks on CPU, every comparison measured in the same run (ratios, not absolute claims).

1. forward+backward time per training sample, demo configuration (conf/model/demo.yaml projection,
   a Llama the size of conf/bootstrap/demo.yaml's LLM, image features of the demo encoder's shape);
2. the image path (frozen vision tower -> Q-Former -> frozen LLM, loss on the answer) in xib vs
   transformers' own InstructBlipForConditionalGeneration built with the same sizes and weights;
3. batched KV-cached generation vs one sample at a time, batch 32.

    .venv/bin/python benchmarks/bench_model.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from xib.models.projectors import load_pretrained_qformer
from xib.models.testing import DEFAULT_WORDS, save_tiny_llm, tiny_model
from xib.models.xinstructblip import MediaInput, fill_slots
from xib.prompts import instruction_prompt

# conf/bootstrap/demo.yaml's demo LLM and conf/model/demo.yaml's image encoder (32px, patch 8, width 64)
LLM = dict(hidden_size=128, layers=4, heads=4, kv_heads=4, intermediate_size=344, tie_word_embeddings=True)
IMAGE_TOKENS, IMAGE_DIM = 17, 64
WORDS = [*DEFAULT_WORDS, *(f"w{i}" for i in range(300))]  # a vocabulary the size of the world's


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_examples(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        media = MediaInput(
            "image", torch.randn(1, IMAGE_TOKENS, IMAGE_DIM, generator=g), None, "what colour is it ?"
        )
        answer = " ".join(["a", "red", "round", "cube", "that", "sits"][: 2 + i % 4])
        out.append((fill_slots(instruction_prompt("image", "what colour is it ?"), [media]), answer))
    return out


def bench_train_step(model, batch_size: int, repeats: int) -> float:
    model.train()
    batch = model.collate(training_examples(batch_size))

    def step():
        model.zero_grad(set_to_none=True)
        model.loss(batch).backward()

    return timed(step, repeats) / batch_size


def bench_vs_hf(tmp: Path, repeats: int, batch_size: int) -> tuple[float, float, float]:
    """xib's image path vs InstructBlipForConditionalGeneration, same sizes, same weights, same batch."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    llm_dir = save_tiny_llm(tmp / "llm_hf", WORDS, max_positions=512, **LLM)
    model = tiny_model(llm_dir, {"image": IMAGE_DIM}, dropout=0.0)
    tok, proj_cfg = model.tokenizer, model.cfg.projection
    k = int(proj_cfg.num_query_tokens)
    image_token = tok.convert_tokens_to_ids("w299")  # HF's image placeholder: a word no prompt uses
    config = InstructBlipConfig(
        vision_config=dict(
            hidden_size=IMAGE_DIM,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        qformer_config=dict(
            vocab_size=model.projections["image"].config.qformer_vocab_size,
            hidden_size=proj_cfg.qformer_hidden,
            num_hidden_layers=proj_cfg.qformer_layers,
            num_attention_heads=proj_cfg.qformer_heads,
            intermediate_size=proj_cfg.qformer_intermediate,
            cross_attention_frequency=proj_cfg.cross_attention_frequency,
            encoder_hidden_size=IMAGE_DIM,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        text_config=model.llm.config.to_dict(),
        num_query_tokens=k,
        image_token_index=image_token,
    )
    hf = InstructBlipForConditionalGeneration(config)
    hf.language_model.load_state_dict(model.llm.state_dict())  # the same LLM weights in both
    hf.vision_model.requires_grad_(False)
    hf.language_model.requires_grad_(False)
    hf.train()
    hf.save_pretrained(tmp / "hf")
    load_pretrained_qformer(model.projections["image"], tmp / "hf", skip_cross_attention=False)
    model.train()

    pixels = torch.randn(batch_size, 3, 32, 32)
    examples = training_examples(batch_size)
    with torch.no_grad():
        raw = hf.vision_model(pixels, output_hidden_states=True).hidden_states[-1]
    for i, (prompt, _) in enumerate(examples):
        prompt[0].features = raw[i : i + 1]
    batch = model.collate(examples)
    # HF's inputs: the same sequence, soft-token positions marked with its image token
    input_ids = batch.input_ids.clone()
    for mb in batch.media.values():
        for row, start in zip(mb.rows.tolist(), mb.starts.tolist()):
            input_ids[row, start : start + k] = image_token
    instr = batch.media["image"]
    hf_inputs = dict(
        pixel_values=pixels,
        qformer_input_ids=instr.instr_ids,
        qformer_attention_mask=instr.instr_mask,
        input_ids=input_ids,
        attention_mask=batch.attention_mask,
        labels=batch.labels,
    )
    with torch.no_grad():
        model.eval(), hf.eval()
        ours_loss = float(model.loss(batch))
        hf_loss = float(hf(**hf_inputs).loss)
        model.train(), hf.train()
    assert abs(ours_loss - hf_loss) < 1e-4, (ours_loss, hf_loss)  # the same computation

    def ours_step():
        model.zero_grad(set_to_none=True)
        with torch.no_grad():  # the frozen encoder, as xib runs it (or reads it from the feature cache)
            feats = hf.vision_model(pixels, output_hidden_states=True).hidden_states[-1]
        for i, (prompt, _) in enumerate(examples):
            prompt[0].features = feats[i : i + 1]
        model.loss(model.collate(examples)).backward()

    def hf_step():
        hf.zero_grad(set_to_none=True)
        hf(**hf_inputs).loss.backward()

    ours_t, hf_t = [], []
    for _ in range(repeats):  # interleaved so both see the same machine load
        ours_t.append(timed(ours_step, 1))
        hf_t.append(timed(hf_step, 1))
    return statistics.median(ours_t) / batch_size, statistics.median(hf_t) / batch_size, ours_loss


def bench_generation(model, n: int, repeats: int, max_new_tokens: int = 10) -> tuple[float, float]:
    from xib.models.config import GenerationConfig

    model.eval()
    gen = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, min_length=max_new_tokens)
    prompts = [p for p, _ in training_examples(n, seed=1)]
    batched = single = 0.0
    batched_t, single_t = [], []
    for _ in range(repeats):
        batched_t.append(timed(lambda: model.generate(prompts, gen, batch_size=n), 1))
        single_t.append(timed(lambda: [model.generate([p], gen) for p in prompts], 1))
    assert model.generate(prompts, gen, batch_size=n) == [model.generate([p], gen)[0] for p in prompts]
    batched, single = statistics.median(batched_t), statistics.median(single_t)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        llm_dir = save_tiny_llm(tmp / "llm", WORDS, **LLM)
        model = tiny_model(llm_dir, {"image": IMAGE_DIM})
        counts = model.parameter_counts()
        per_sample = bench_train_step(model, args.batch, args.repeats)
        ours, theirs, loss = bench_vs_hf(tmp, args.repeats, args.batch)
        batched, single = bench_generation(model, 32, max(1, args.repeats // 2))
    print(f"threads={args.threads} batch={args.batch} repeats={args.repeats} (medians)")
    print(
        f"demo model: LLM {counts['llm']:,} frozen, image projection {counts['projection/image']:,} trainable"
    )
    print(f"| forward+backward per sample, demo config | {per_sample * 1e3:.2f} ms |")
    print(
        f"| image path fwd+bwd per sample: xib {ours * 1e3:.2f} ms vs HF InstructBlipForConditionalGeneration "
        f"{theirs * 1e3:.2f} ms | HF/xib = {theirs / ours:.2f}x (same loss {loss:.4f}) |"
    )
    print(
        f"| generation, 32 prompts x 10 tokens: batched {batched:.3f} s vs one-by-one {single:.3f} s "
        f"| {single / batched:.1f}x |"
    )


if __name__ == "__main__":
    main()
