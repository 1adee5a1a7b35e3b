"""Instruction data from captions: single-modality records with correct answers, the QA filter,
the pluggable generators (world templates, a mocked generator, tiny random HF models), mixing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from xib.config import load_config
from xib.data.fuzzy import judge
from xib.data.instruct import (
    Item,
    LLMGenerator,
    attribute_value,
    attribute_vocabulary,
    build_instruct,
    generate_qa,
    instruct_path,
    mixture_weights,
    read_attribute,
)
from xib.data.manifest import manifest_path, read_manifest, write_manifest
from xib.data.world import KINDS, KINDS_BY_NAME, caption
from xib.errors import XibError

MODALITIES = ("image", "pc", "audio", "video")
SPLITS = ("train", "val", "test")


def make_manifests(cfg, per_kind: int = 3, wrong_captions: int = 0) -> None:
    """One item per entity and modality; entity j of a kind goes to split j % 3 (disjoint splits).
    The first `wrong_captions` image items of each split get another kind's caption."""
    for modality in MODALITIES:
        for s, split in enumerate(SPLITS):
            rows = []
            for kind in KINDS:
                for j in range(per_kind):
                    if j % len(SPLITS) != s:
                        continue
                    eid = f"{kind.name}-{j}"
                    text = caption(kind, modality)
                    if modality == "image" and len(rows) < wrong_captions:
                        text = caption(KINDS[(KINDS.index(kind) + 5) % len(KINDS)], modality)
                    rows.append(
                        {
                            "id": f"{modality}-{eid}",
                            "entity_id": eid,
                            "kind": kind.name,
                            "modality": modality,
                            "uri": f"shard-000000.tar#{modality}-{eid}.bin",
                            "caption": text,
                            "split": split,
                            "source": "world",
                        }
                    )
            write_manifest(pd.DataFrame(rows), manifest_path(cfg, modality, split))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def world_cfg(xib_root: Path):
    cfg = load_config(["data.instruct.qa_per_item=2"])
    make_manifests(cfg)
    return cfg


def test_records_are_single_modality_with_correct_answers(world_cfg) -> None:
    summary = build_instruct(world_cfg)
    icfg = world_cfg.data.instruct
    seen_tasks = set()
    for modality in MODALITIES:
        for split in SPLITS:
            manifest = read_manifest(manifest_path(world_cfg, modality, split)).set_index("id")
            records = read_jsonl(instruct_path(world_cfg, modality, split))
            assert records, (modality, split)
            assert len({r["id"] for r in records}) == len(records)
            for r in records:
                seen_tasks.add(r["task"])
                # one item of this modality and split per record: never cross-modal
                assert r["modality"] == modality and r["item_id"] in manifest.index
                row = manifest.loc[r["item_id"]]
                kind = KINDS_BY_NAME[row["kind"]]
                assert r["caption"] == row["caption"] == caption(kind, modality)
                assert r["source"] == "world"
                if r["task"] == "caption":
                    assert r["answer"] == r["caption"]
                    assert r["instruction"] in icfg.templates["caption"][modality]
                elif r["task"] == "qa":
                    assert r["attribute"] in icfg.qa_attributes[modality]
                    assert r["answer"] == attribute_value(kind, r["attribute"])
                    assert r["answer"] in r["caption"]
                    assert r["question"] in icfg.questions[r["attribute"]]
                    assert r["question"] in r["instruction"]
                    assert "candidates" not in r
                else:
                    attribute = icfg.classify_attribute[modality]
                    assert r["answer"] == attribute_value(kind, attribute)
                    assert r["candidates"] == list(attribute_vocabulary(attribute))
                    assert r["answer"] in r["candidates"]
    assert seen_tasks == {"caption", "qa", "classify"}
    # two QA per image item (it shows three attributes), one per audio item (it shows one)
    image = summary["modalities"]["image"]["train"]
    audio = summary["modalities"]["audio"]["train"]
    assert image["records"]["qa"] == 2 * image["items"]
    assert audio["records"]["qa"] == audio["items"]
    assert image["mixture"]["qa"] == pytest.approx((2 * 16) ** 0.5 / ((2 * 16) ** 0.5 + 2 * 16**0.5))


def test_same_seed_same_files_other_seed_other_instructions(world_cfg, xib_root: Path) -> None:
    build_instruct(world_cfg)
    first = {p: p.read_bytes() for p in sorted((xib_root / "data/instruct").rglob("*.jsonl"))}
    build_instruct(world_cfg)
    assert first == {p: p.read_bytes() for p in sorted((xib_root / "data/instruct").rglob("*.jsonl"))}
    build_instruct(load_config(["data.instruct.qa_per_item=2", "data.instruct.seed=99"]))
    assert first != {p: p.read_bytes() for p in sorted((xib_root / "data/instruct").rglob("*.jsonl"))}


def test_template_qa_is_discarded_when_the_caption_does_not_state_it(xib_root: Path) -> None:
    cfg = load_config(["data.instruct.modalities=[image]", "data.instruct.qa_per_item=3"])
    make_manifests(cfg, wrong_captions=4)
    summary = build_instruct(cfg)
    train = summary["modalities"]["image"]["train"]
    # 4 items show another kind's colour, shape and setting: the kind's answers are not in the caption
    assert train["qa_verdicts"] == {"kept": 3 * (train["items"] - 4), "not_in_caption": 12}
    assert train["skipped"] == {"classify_not_in_caption": 4}
    for r in read_jsonl(instruct_path(cfg, "image", "train")):
        if r["task"] == "qa":
            assert judge(r["answer"], r["question"], r["answer"], r["caption"], 90.0).keep


def test_fuzzy_filter_keeps_and_discards() -> None:
    cap = "a dog barking in the park"
    assert judge("barking", "what is the dog doing?", "barking.", cap, 90.0).keep
    assert judge("Barking", "what is the dog doing?", "the dog is barking", cap, 90.0).reason == "round_trip"
    assert judge("meowing", "what is it doing?", "meowing", cap, 90.0).reason == "not_in_caption"
    assert judge("barkin", "what is the dog doing?", "barking", cap, 80.0).keep  # fuzzy, not exact
    assert judge("barking", "", "barking", cap, 90.0).reason == "no_question"
    # one letter is "in" any caption and round-trips trivially: the length floor discards it
    assert judge("a", "which letter?", "a", cap, 90.0, min_answer_chars=2).reason == "short_answer"
    assert not judge("barking", "what is the dog doing?", "b", cap, 90.0).keep


def test_read_attribute_uses_the_world_vocabulary() -> None:
    assert read_attribute("a red cube in a city", "colour") == "red"
    assert read_attribute("a red cube in a city", "habitat") == "in a city"
    assert read_attribute("the sound of barking", "sound") == "barking"
    assert read_attribute("a large ring", "colour") == ""


class FixedGenerator:
    """A mocked generator: the filter must keep only the round trips that match."""

    def __init__(self, answers, questions, trips):
        self.answers, self.questions, self.trips = answers, questions, trips

    def propose(self, items, n):
        return [self.answers[:n] for _ in items]

    def ask(self, pairs):
        return [self.questions[a] for _, a in pairs]

    def answer(self, pairs):
        return [self.trips[q] for _, q in pairs]


def test_mocked_generator_keep_path() -> None:
    icfg = load_config(["data.instruct.qa_per_item=4"]).data.instruct
    item = Item("audio-1", "audio", "train", "a dog barking in the park", None, "audiocaps")
    generator = FixedGenerator(
        ["barking", "the moon", "park", "dog"],
        {"barking": "what is the dog doing?", "the moon": "what is up?", "park": "where?", "dog": "who?"},
        {
            "what is the dog doing?": "Barking.",
            "what is up?": "the moon",
            "where?": "in a park",
            "who?": "a dog",
        },
    )
    result = generate_qa([item], generator, icfg)
    assert result.proposed == 4
    assert [(r["answer"], r["question"]) for r in result.records] == [
        ("barking", "what is the dog doing?"),
        ("dog", "who?"),
    ]
    assert result.verdicts == {"kept": 2, "not_in_caption": 1, "round_trip": 1}


def test_mixture_weights_square_root_of_size() -> None:
    weights = mixture_weights({"caption": 100, "qa": 25, "classify": 0})
    assert weights == pytest.approx({"caption": 10 / 15, "qa": 5 / 15, "classify": 0.0})
    assert mixture_weights([1, 4, 4], "proportional") == pytest.approx([1 / 9, 4 / 9, 4 / 9])
    assert mixture_weights([3, 7], "uniform") == pytest.approx([0.5, 0.5])
    with pytest.raises(XibError):
        mixture_weights([1], "linear")
    with pytest.raises(ValueError):
        mixture_weights([0, 0])


def _tiny_tokenizer(words: set[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def _save_tiny_models(root: Path, icfg) -> dict[str, Path]:
    import re

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    text = " ".join([icfg.llm.answer_prompt, icfg.llm.question_prompt, icfg.llm.round_trip_prompt])
    text += " " + " ".join(caption(k, m) for k in KINDS for m in MODALITIES)
    words = set(re.findall(r"\w+|[^\w\s]", text))
    tokenizer = _tiny_tokenizer(words)
    n = len(tokenizer)
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(
        T5Config(
            vocab_size=n, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )  # fmt: skip
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=1,
        )
    )  # fmt: skip
    dirs = {"t5": root / "t5", "llama": root / "llama"}
    for name, model in (("t5", t5), ("llama", llama)):
        model.save_pretrained(dirs[name])
        tokenizer.save_pretrained(dirs[name])
    return dirs


def test_llm_generator_runs_paper_prompts_on_tiny_random_models(xib_root: Path) -> None:
    cfg = load_config(["data.instruct.modalities=[audio,pc]", "data.instruct.splits=[test]"])
    make_manifests(cfg)
    dirs = _save_tiny_models(xib_root / "models", cfg.data.instruct)
    for name, path in dirs.items():
        run = load_config(
            [
                "data.instruct.modalities=[audio,pc]",
                "data.instruct.splits=[test]",
                "data.instruct.generator=llm",
                f"data.instruct.generator_model={path}",
                "data.instruct.llm.max_new_tokens=4",
            ]
        )
        summary = build_instruct(run)
        for modality in ("audio", "pc"):
            stats = summary["modalities"][modality]["test"]
            assert stats["qa_proposed"] == stats["items"] == 16, name
            assert sum(stats["qa_verdicts"].values()) == stats["qa_proposed"]
            # a random model's pairs are mostly discarded
            assert stats["qa_verdicts"].get("kept", 0) <= stats["qa_proposed"] // 2, stats["qa_verdicts"]
            records = read_jsonl(instruct_path(run, modality, "test"))
            assert {r["task"] for r in records} >= {"caption", "classify"}
            qa = [r for r in records if r["task"] == "qa"]
            assert len(qa) == stats["qa_verdicts"].get("kept", 0)
            for r in qa:  # whatever a random model got through passed the filter
                assert r["modality"] == modality
                assert judge(r["answer"], r["question"], r["answer"], r["caption"], 90.0, 2).keep
    # the model's own outputs, straight: strings for every prompt, at most the requested count
    generator = LLMGenerator(str(dirs["t5"]), cfg.data.instruct.llm, seed=0)
    outs = generator.generate(
        ["Generate a potential answer word from the following text: a large cube"] * 3, n=2
    )
    assert len(outs) == 3 and all(len(o) == 2 and all(isinstance(s, str) for s in o) for o in outs)


def test_missing_manifests_and_bad_config_are_clear_errors(xib_root: Path) -> None:
    with pytest.raises(XibError, match="xib world"):
        build_instruct(load_config())
    with pytest.raises(XibError, match="generator_model"):
        build_instruct(load_config(["data.instruct.generator=llm"]))
    with pytest.raises(XibError, match="attribute"):
        build_instruct(load_config(["data.instruct.classify_attribute.image=flavour"]))
