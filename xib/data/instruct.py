"""Instruction data from captions: `data/instruct/<m>/<split>.jsonl`, one item (one modality) per record.

Three tasks per item, each with an instruction template sampled (seeded) from conf:
- caption: the answer is the item's caption;
- qa: question/answer pairs made from the caption the paper's way: generate an answer (a span of
  the caption), then a question for that answer, then answer the question again from the caption
  alone (round trip); keep the pair only if the answer is in the caption and the round trip gives
  it back (fuzzy scores above `fuzzy_threshold`, see xib.data.fuzzy);
- classify: one attribute the modality shows, answered among every value it can take (the paper's
  ModelNet40/ESC-50 style; the evaluator ranks `candidates` by LM loss).

QA generators are pluggable: `templates` proposes answers from the world's ground truth (the
item's kind), writes questions from conf wordings and answers them back by reading the caption
with the world's vocabulary; `llm` runs the paper's three prompts through any local Hugging Face
seq2seq or causal LM directory (flan-t5-xxl in the paper). Both go through the same filter.

Task datasets are mixed in training by the square root of their size (`mixture_weights`).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from xib.config import MODALITIES
from xib.data.config import GENERATORS, TASKS
from xib.data.fuzzy import judge, normalize
from xib.data.world import (
    COLOURS,
    HABITAT_PHRASE,
    HABITATS,
    KINDS,
    KINDS_BY_NAME,
    MOTIONS,
    SHAPES,
    SIZES,
    Kind,
)
from xib.errors import XibError
from xib.io import atomic_path, write_json
from xib.train.config import MIXES

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.data.config import InstructConfig, InstructLLMConfig

# Attribute -> (its value for a kind as the caption words it, every value it can take).
ATTRIBUTES: dict[str, tuple[Callable[[Kind], str], tuple[str, ...]]] = {
    "colour": (lambda k: k.colour, tuple(COLOURS)),
    "shape": (lambda k: k.shape, SHAPES),
    "habitat": (lambda k: HABITAT_PHRASE[k.habitat], tuple(HABITAT_PHRASE[h] for h in HABITATS)),
    "size": (lambda k: k.size, SIZES),
    "sound": (lambda k: k.sound, tuple(dict.fromkeys(k.sound for k in KINDS))),
    "motion": (lambda k: k.motion, MOTIONS),
}


def attribute_value(kind: Kind, attribute: str) -> str:
    return ATTRIBUTES[attribute][0](kind)


def attribute_vocabulary(attribute: str) -> tuple[str, ...]:
    return ATTRIBUTES[attribute][1]


def read_attribute(caption: str, attribute: str) -> str:
    """The value of `attribute` a caption states (the earliest whole-phrase match, longest first), or ""."""
    text = f" {normalize(caption)} "
    best: tuple[int, int, str] | None = None
    for value in attribute_vocabulary(attribute):
        pos = text.find(f" {normalize(value)} ")
        if pos >= 0:
            key = (pos, -len(value), value)
            best = key if best is None or key < best else best
    return best[2] if best else ""


# --- mixing ------------------------------------------------------------------------------------


def mixture_weights(
    sizes: Mapping[str, int] | Sequence[int], mix: str = "sqrt"
) -> dict[str, float] | list[float]:
    """Sampling probabilities of datasets of the given sizes: sqrt(size) (the paper), proportional
    to size, or uniform; empty datasets get 0. Returns the same shape as `sizes` (dict or list)."""
    if mix not in MIXES:
        raise XibError(f"mix={mix!r}: must be one of {', '.join(MIXES)}")
    if isinstance(sizes, Mapping):
        keys: list[str] = list(sizes)
        values = [sizes[k] for k in keys]
    else:
        keys = []
        values = [sizes[i] for i in range(len(sizes))]
    if any(int(n) < 0 for n in values):
        raise ValueError(f"dataset sizes must be >= 0: {values}")
    raw = [
        0.0 if n <= 0 else math.sqrt(n) if mix == "sqrt" else float(n) if mix == "proportional" else 1.0
        for n in values
    ]
    total = sum(raw)
    if total <= 0:
        raise ValueError("mixture_weights needs at least one non-empty dataset")
    probs = [r / total for r in raw]
    return dict(zip(keys, probs)) if isinstance(sizes, Mapping) else probs


def dataset_sizes(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Records per task: the datasets `mixture_weights` mixes."""
    return dict(sorted(Counter(str(r["task"]) for r in records).items()))


# --- generators --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    item_id: str
    modality: str
    split: str
    caption: str
    kind: Kind | None
    source: str


class QAGenerator(Protocol):
    """The three steps of QA generation; each is batched over many items."""

    def propose(self, items: Sequence[Item], n: int) -> list[list[str]]:
        """Up to n candidate answers (spans of the caption) per item."""

    def ask(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        """A question for each (item, answer), from the caption."""

    def answer(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        """The round trip: each (item, question) answered from the caption alone."""


class TemplateGenerator:
    """Answers from the world's ground truth, questions from conf wordings, answers read back from
    the caption with the world's vocabulary (so a caption that does not state the value fails)."""

    def __init__(self, icfg: InstructConfig, seed: int) -> None:
        self.seed = int(seed)
        self.qa_attributes = {m: list(a) for m, a in icfg.qa_attributes.items()}
        self.questions = {a: list(q) for a, q in icfg.questions.items()}
        self.question_attribute = {normalize(q): a for a, qs in self.questions.items() for q in qs}

    def _rng(self, item: Item, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}|{item.modality}|{item.split}|{item.item_id}|{purpose}")

    def propose(self, items: Sequence[Item], n: int) -> list[list[str]]:
        out: list[list[str]] = []
        for item in items:
            attributes = list(self.qa_attributes.get(item.modality, []))
            if item.kind is None:
                out.append([])
                continue
            self._rng(item, "attributes").shuffle(attributes)
            out.append([attribute_value(item.kind, a) for a in attributes[:n]])
        return out

    def ask(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        out = []
        for item, answer in pairs:
            attribute = next(
                (
                    a
                    for a in self.qa_attributes.get(item.modality, [])
                    if normalize(answer) in {normalize(v) for v in attribute_vocabulary(a)}
                ),
                None,
            )
            wordings = self.questions.get(attribute or "", [])
            out.append(self._rng(item, f"question|{answer}").choice(wordings) if wordings else "")
        return out

    def answer(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        out = []
        for item, question in pairs:
            attribute = self.question_attribute.get(normalize(question))
            out.append(read_attribute(item.caption, attribute) if attribute else "")
        return out


class LLMGenerator:
    """The paper's prompts through a local HF model (seq2seq, e.g. flan-t5, or causal), greedy decoding."""

    def __init__(self, model_dir: str, llm_cfg: InstructLLMConfig, seed: int) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        path = Path(model_dir)
        if not model_dir or not path.is_dir():
            raise XibError(
                f"data.instruct.generator_model={model_dir!r}: generator=llm needs a local model directory"
            )
        torch.manual_seed(int(seed))
        self.cfg = llm_cfg
        config = AutoConfig.from_pretrained(path)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loader = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        # transformers types `.to` on the loaded model as its decorated wrapper; the model is what returns
        model: Any = loader.from_pretrained(path, dtype=getattr(torch, llm_cfg.dtype))
        self.model = model.to(llm_cfg.device).eval()

    def generate(self, prompts: Sequence[str], n: int = 1, desc: str = "generate") -> list[list[str]]:
        import torch
        from tqdm import tqdm

        out: list[list[str]] = []
        size = max(1, int(self.cfg.batch_size))
        for start in tqdm(range(0, len(prompts), size), desc=desc, unit="batch", leave=False):
            batch = list(prompts[start : start + size])
            enc = self.tokenizer(
                batch,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=int(self.cfg.max_input_tokens),
            ).to(self.cfg.device)
            with torch.no_grad():
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=int(self.cfg.max_new_tokens),
                    do_sample=False,
                    num_beams=max(1, n),
                    num_return_sequences=n,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            if not self.seq2seq:
                ids = ids[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for i in range(len(batch)):
                lines = [
                    t.strip().splitlines()[0].strip() if t.strip() else "" for t in texts[i * n : (i + 1) * n]
                ]
                out.append(lines)
        return out

    def propose(self, items: Sequence[Item], n: int) -> list[list[str]]:
        prompts = [self.cfg.answer_prompt.format(caption=item.caption) for item in items]
        # empty generations stay: the filter counts them as discarded
        return [list(dict.fromkeys(answers)) for answers in self.generate(prompts, n, "answers")]

    def ask(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        prompts = [self.cfg.question_prompt.format(caption=i.caption, answer=a) for i, a in pairs]
        return [g[0] for g in self.generate(prompts, 1, "questions")]

    def answer(self, pairs: Sequence[tuple[Item, str]]) -> list[str]:
        prompts = [self.cfg.round_trip_prompt.format(caption=i.caption, question=q) for i, q in pairs]
        return [g[0] for g in self.generate(prompts, 1, "round trip")]


def make_generator(icfg: InstructConfig) -> QAGenerator:
    if icfg.generator == "templates":
        return TemplateGenerator(icfg, icfg.seed)
    if icfg.generator == "llm":
        return LLMGenerator(icfg.generator_model, icfg.llm, icfg.seed)
    raise XibError(f"data.instruct.generator={icfg.generator!r}: must be one of {', '.join(GENERATORS)}")


# --- building the records ----------------------------------------------------------------------


@dataclass
class QAResult:
    records: list[dict[str, Any]]
    proposed: int
    verdicts: Counter


def generate_qa(items: Sequence[Item], generator: QAGenerator, icfg: InstructConfig) -> QAResult:
    """Answer -> question -> round trip for every item, filtered; one list of kept pairs per item."""
    proposals = generator.propose(items, icfg.qa_per_item)
    pairs = [
        (item, answer) for item, answers in zip(items, proposals) for answer in answers[: icfg.qa_per_item]
    ]
    questions = generator.ask(pairs) if pairs else []
    trips = generator.answer([(item, q) for (item, _), q in zip(pairs, questions)]) if pairs else []
    verdicts: Counter = Counter()
    records: list[dict[str, Any]] = []
    per_item: Counter = Counter()
    for (item, answer), question, trip in zip(pairs, questions, trips):
        verdict = judge(answer, question, trip, item.caption, icfg.fuzzy_threshold, icfg.min_answer_chars)
        verdicts[verdict.reason] += 1
        if not verdict.keep:
            continue
        j = per_item[item.item_id]
        per_item[item.item_id] += 1
        attribute = next(
            (a for a in icfg.qa_attributes.get(item.modality, []) if answer in attribute_vocabulary(a)), ""
        )
        records.append(
            {
                "item_id": item.item_id,
                "id": f"{item.item_id}-qa{j}",
                "task": "qa",
                "question": question.strip(),
                "answer": answer.strip(),
                "attribute": attribute,
            }
        )
    return QAResult(records, len(pairs), verdicts)


def _template(icfg: InstructConfig, task: str, item: Item, salt: str = "") -> str:
    templates = list(icfg.templates.get(task, {}).get(item.modality, []))
    if not templates:
        raise XibError(f"data.instruct.templates.{task}.{item.modality}: no instruction templates")
    rng = random.Random(f"{icfg.seed}|{item.modality}|{item.split}|{item.item_id}|{task}|{salt}")
    return rng.choice(templates)


def _record(item: Item, task: str, instruction: str, answer: str, rid: str, **extra: Any) -> dict[str, Any]:
    record = {
        "id": rid,
        "item_id": item.item_id,
        "modality": item.modality,
        "task": task,
        "instruction": instruction,
        "answer": answer,
        "caption": item.caption,
        "source": item.source,
    }
    record.update(extra)
    return record


def build_records(
    items: Sequence[Item], icfg: InstructConfig, generator: QAGenerator | None
) -> tuple[list[dict], dict]:
    """Every record for the items of one modality and split, item by item, and counts."""
    tasks = list(icfg.tasks)
    qa_by_item: dict[str, list[dict[str, Any]]] = {}
    stats: dict[str, Any] = {"items": len(items), "qa_proposed": 0, "qa_verdicts": {}, "skipped": Counter()}
    if "qa" in tasks and generator is not None:
        result = generate_qa([i for i in items if i.caption], generator, icfg)
        for qa in result.records:
            qa_by_item.setdefault(qa["item_id"], []).append(qa)
        stats["qa_proposed"] = result.proposed
        stats["qa_verdicts"] = dict(sorted(result.verdicts.items()))
    records: list[dict[str, Any]] = []
    for item in items:
        if not item.caption:
            stats["skipped"]["no_caption"] += 1
            continue
        if "caption" in tasks:
            records.append(
                _record(
                    item, "caption", _template(icfg, "caption", item), item.caption, f"{item.item_id}-caption"
                )
            )
        for qa in qa_by_item.get(item.item_id, []):
            instruction = _template(icfg, "qa", item, qa["id"]).format(question=qa["question"])
            records.append(
                _record(
                    item,
                    "qa",
                    instruction,
                    qa["answer"],
                    qa["id"],
                    question=qa["question"],
                    attribute=qa["attribute"],
                )
            )
        if "classify" in tasks:
            attribute = icfg.classify_attribute.get(item.modality, "")
            if attribute:
                value = read_attribute(item.caption, attribute)
                if not value or (item.kind is not None and value != attribute_value(item.kind, attribute)):
                    stats["skipped"]["classify_not_in_caption"] += 1
                else:
                    records.append(
                        _record(
                            item,
                            "classify",
                            _template(icfg, "classify", item),
                            value,
                            f"{item.item_id}-classify",
                            candidates=list(attribute_vocabulary(attribute)),
                            attribute=attribute,
                        )
                    )
    stats["skipped"] = dict(stats["skipped"])
    stats["records"] = dataset_sizes(records)
    return records, stats


def check_config(icfg: InstructConfig) -> None:
    for name, values, allowed in (
        ("modalities", icfg.modalities, MODALITIES),
        ("tasks", icfg.tasks, TASKS),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise XibError(f"data.instruct.{name}: {bad} not among {list(allowed)}")
    for modality, attributes in list(icfg.qa_attributes.items()) + [
        (m, [a]) for m, a in icfg.classify_attribute.items()
    ]:
        bad = [a for a in attributes if a not in ATTRIBUTES]
        if bad:
            raise XibError(f"data.instruct: attribute(s) {bad} of {modality} not among {sorted(ATTRIBUTES)}")
    for attribute in {a for attrs in icfg.qa_attributes.values() for a in attrs}:
        if not icfg.questions.get(attribute):
            raise XibError(f"data.instruct.questions.{attribute}: no question wordings")
    if icfg.fuzzy_threshold < 0 or icfg.fuzzy_threshold >= 100:
        raise XibError("data.instruct.fuzzy_threshold must be in [0, 100)")


def items_from_manifest(df: Any, modality: str, split: str) -> list[Item]:
    items = []
    for row in df.itertuples(index=False):
        kind_name = str(getattr(row, "kind", "") or "")
        caption = getattr(row, "caption", "")
        items.append(
            Item(
                item_id=str(row.id),
                modality=modality,
                split=split,
                caption=" ".join(str(caption).split()) if isinstance(caption, str) else "",
                kind=KINDS_BY_NAME.get(kind_name),
                source=str(getattr(row, "source", "") or ""),
            )
        )
    return items


def instruct_path(cfg: XibConfig, modality: str, split: str) -> Path:
    return Path(cfg.paths.data) / "instruct" / modality / f"{split}.jsonl"


def write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")


def build_instruct(cfg: XibConfig, generator: QAGenerator | None = None) -> dict[str, Any]:
    """Write `data/instruct/<m>/<split>.jsonl` for every modality and split with a manifest, and
    `data/instruct/summary.json` (counts, filter verdicts, sqrt mixture of the train tasks)."""
    from xib.data.manifest import manifest_path, read_manifest

    icfg = cfg.data.instruct
    check_config(icfg)
    if generator is None and "qa" in icfg.tasks:
        generator = make_generator(icfg)
    summary: dict[str, Any] = {"generator": icfg.generator, "modalities": {}}
    written = 0
    for modality in icfg.modalities:
        per_split: dict[str, Any] = {}
        for split in icfg.splits:
            path = manifest_path(cfg, modality, split)
            if not path.is_file():
                continue
            items = items_from_manifest(read_manifest(path), modality, split)
            records, stats = build_records(items, icfg, generator)
            write_jsonl(instruct_path(cfg, modality, split), records)
            written += 1
            if split == "train" and records:
                stats["mixture"] = mixture_weights(stats["records"], "sqrt")
            per_split[split] = stats
        if per_split:
            summary["modalities"][modality] = per_split
    if not written:
        raise XibError(
            f"no manifests under {Path(cfg.paths.data) / 'world'} for {list(icfg.modalities)} x "
            f"{list(icfg.splits)}: run `xib world` or `xib ingest` first"
        )
    write_json(Path(cfg.paths.data) / "instruct" / "summary.json", summary)
    return summary
