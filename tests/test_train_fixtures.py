"""Tiny stand-ins for alignment tests: a word-level Llama saved with save_pretrained, cached
features written through the real feature-cache writer, and instruction records in the real layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

KINDS = ["cube", "ball", "cone", "ring"]
COLOURS = ["red", "blue", "green", "yellow"]
FEATURE_SHAPE = (1, 4, 16)  # views, tokens, width


def save_tiny_llm(path: Path, words: list[str], hidden: int = 32, layers: int = 2) -> Path:
    """A 2-layer Llama and a WordLevel fast tokenizer, both saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_world(root: Path, modality: str = "image", items: int = 24) -> list[str]:
    """Features + instruction data for `modality` under root/{artifacts,data}; returns Hydra overrides."""
    import torch

    from xib.train.features import write_features

    gen = torch.Generator().manual_seed(1)
    centroids = torch.randn(len(KINDS) * len(COLOURS), *FEATURE_SHAPE[1:], generator=gen)
    words = ["image:", "3d:", "audio:", "video:", "what", "is", "this?", "describe", "it.", "a", "colour?"]
    words += KINDS + COLOURS
    for split, n in (("train", items), ("val", max(items // 4, 4)), ("test", 4)):
        feats, records = [], []
        for i in range(n):
            cls = (i * 7 + (0 if split == "train" else 3)) % len(centroids)
            kind, colour = KINDS[cls % len(KINDS)], COLOURS[cls // len(KINDS)]
            item_id = f"{modality}-{split}-{i:04d}"
            f = (centroids[cls] + 0.1 * torch.randn(*FEATURE_SHAPE[1:], generator=gen)).unsqueeze(0)
            feats.append((item_id, f, torch.ones(FEATURE_SHAPE[:2], dtype=torch.bool)))
            caption = f"a {colour} {kind}"
            base = {"item_id": item_id, "modality": modality, "caption": caption, "source": "world"}
            records.append(
                {
                    **base,
                    "id": f"{item_id}-c",
                    "task": "caption",
                    "instruction": "describe it.",
                    "answer": caption,
                }
            )
            if i % 2 == 0:
                records.append(
                    {
                        **base,
                        "id": f"{item_id}-q",
                        "task": "qa",
                        "instruction": "what colour?",
                        "answer": colour,
                    }
                )
        meta = {"key": "test", "modality": modality, "split": split, "encoder_fingerprint": "test-encoder"}
        write_features(root / "artifacts" / "features" / modality / split, feats, meta, shard_items=10)
        out = root / "data" / "instruct" / modality / f"{split}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
    llm = save_tiny_llm(root / "llm", words)
    return [
        f"modality={modality}",
        f"model.llm.path={llm}",
        "model.projection.num_query_tokens=3",
        "model.projection.qformer_hidden=16",
        "model.projection.qformer_layers=1",
        "model.projection.qformer_heads=2",
        "model.projection.qformer_intermediate=32",
        "model.projection.max_instruction_tokens=8",
        "model.generation.max_new_tokens=3",
        "model.generation.num_beams=1",
        "train.micro_batch_size=4",
        "train.lr=3e-3",
        "train.warmup_steps=2",
        "~train.steps_by_modality",  # the demo's per-modality steps would dwarf the tests' `train.steps`
        "train.log_every=1",
        "train.eval_batches=1",
        "train.eval_samples=2",
        "train.procs=2",
        "train.threads_per_proc=1",
        f"infra.mlflow_tracking_uri=sqlite:///{root}/mlflow.db",
        f"infra.mlflow_artifact_root={root}/mlruns",
    ]


@pytest.fixture
def tiny_world(xib_root: Path) -> list[str]:
    return make_world(xib_root)


def test_tiny_world_is_readable(tiny_world: list[str], xib_root: Path) -> None:
    from xib.train.dataset import InstructionDataset, read_instructions
    from xib.train.features import FeatureStore

    store = FeatureStore(xib_root / "artifacts/features/image/train")
    data = InstructionDataset(read_instructions(xib_root / "data/instruct/image/train.jsonl"), store)
    assert len(store) == 24 and store.feature_dim == FEATURE_SHAPE[-1]
    assert data[0]["features"].shape == FEATURE_SHAPE and set(data.by_task) == {"caption", "qa"}
