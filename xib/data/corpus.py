"""The demo LLM's pre-training text: the toy world's knowledge, written in the layouts xib prompts use.

Five kinds of line, one document per line (the LM sees each as `<s> line </s>`):
- facts about kinds (`xib.data.world.facts`);
- knowledge: what the comparison questions ask about (alive, flies, size, habitat, speed, loudness),
  said of a kind or of one of its captions (" audio: the sound of barking is fast.");
- caption-to-kind sentences for every modality (" image: a brown sphere in a home is a dog.");
- single-input instructions in the layout of `xib.prompts.instruction_prompt`, the caption in place of
  the input's soft tokens, with the instruction templates of `conf/data` (`data.instruct`);
- two-entity comparisons in the exact DisCRn layout (`xib.prompts.discrn_prompt`), over captions of
  every configured modality pair in both orders, answers " first"/" second" balanced.

Some unordered kind pairs are held out of the comparisons: the demo LLM's text-only DisCRn ceiling
is measured on them (`xib.models.bootstrap_llm`), so it measures reasoning, not recall.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xib.data.world import HABITAT_PHRASE, KINDS, KINDS_BY_NAME, QUESTIONS, Kind, caption, facts
from xib.io import atomic_path
from xib.prompts import ANSWERS, Slot, answer_text, discrn_prompt, instruction_prompt, render_text

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.data.config import CorpusConfig
    from xib.models.config import PromptConfig


@dataclass(frozen=True)
class Comparison:
    """One text-only DisCRn example: two captions of two modalities, a question, its answer."""

    modalities: tuple[str, str]
    kinds: tuple[str, str]
    question: str
    label: int  # 0 = first, 1 = second
    prompt: str  # the rendered DisCRn prompt, up to and including "answer:"

    @property
    def answer(self) -> str:
        return ANSWERS[self.label]

    @property
    def order(self) -> str:
        """The ordered modality pair, e.g. `pc_image` (pc first)."""
        return f"{self.modalities[0]}_{self.modalities[1]}"


def corpus_path(cfg: XibConfig) -> Path:
    return Path(cfg.paths.data) / "world" / "corpus.txt"


def parse_pair(name: str) -> tuple[str, str]:
    """`image_pc` -> ("image", "pc")."""
    parts = name.split("_")
    if len(parts) != 2 or parts[0] == parts[1]:
        raise ValueError(f"a modality pair is `m1_m2` with two different modalities, got {name!r}")
    return parts[0], parts[1]


def article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def comparable_kind_pairs() -> list[tuple[str, str]]:
    """Unordered kind pairs (sorted names) with at least one comparison question that applies."""
    pairs = []
    for a, b in itertools.combinations(sorted(k.name for k in KINDS), 2):
        if any(q.answer(KINDS_BY_NAME[a], KINDS_BY_NAME[b]) is not None for q in QUESTIONS):
            pairs.append((a, b))
    return pairs


def heldout_kind_pairs(corpus_cfg: CorpusConfig) -> list[tuple[str, str]]:
    """The unordered kind pairs kept out of the corpus's comparisons (the ceiling's test set)."""
    pairs = comparable_kind_pairs()
    count = corpus_cfg.heldout_kind_pairs
    if not 0 <= count < len(pairs):
        raise ValueError(f"data.corpus.heldout_kind_pairs must be in [0, {len(pairs)}), got {count}")
    return sorted(random.Random(corpus_cfg.seed).sample(pairs, count))


def comparisons(
    pairs: Sequence[str],
    kind_pairs: Sequence[tuple[str, str]],
    prompt_cfg: PromptConfig,
) -> list[Comparison]:
    """Every comparison over `pairs` (each modality order named) and `kind_pairs` (both kind orders)."""
    out = []
    for pair in pairs:
        m1, m2 = parse_pair(pair)
        for a, b in kind_pairs:
            for k1, k2 in ((a, b), (b, a)):
                first, second = KINDS_BY_NAME[k1], KINDS_BY_NAME[k2]
                for question in QUESTIONS:
                    label = question.answer(first, second)
                    if label is None:
                        continue
                    segments = discrn_prompt([m1, m2], question.text, prompt_cfg.discrn_prefix)
                    text = render_text(
                        segments,
                        [caption(first, m1), caption(second, m2)],
                        prompt_cfg.cues,
                    )
                    out.append(Comparison((m1, m2), (k1, k2), question.text, label, text))
    return out


def _attribute_answer(kind: Kind, attribute: str) -> str:
    if attribute == "habitat":
        return HABITAT_PHRASE[kind.habitat]
    if attribute == "alive":
        return "yes" if kind.alive else "no"
    if attribute == "flies":
        return "yes" if kind.flies else "no"
    return str(getattr(kind, attribute))


def knowledge(kind: Kind, corpus_cfg: CorpusConfig) -> list[str]:
    """Predicates about `kind` for every attribute the comparison questions ask about."""
    return [
        "is alive" if kind.alive else "is not alive",
        "can fly" if kind.flies else "cannot fly",
        f"is {kind.size}",
        f"lives {HABITAT_PHRASE[kind.habitat]}",
        f"is {corpus_cfg.speed_words[kind.speed]}",
        f"is {corpus_cfg.loudness_words[kind.loudness]}",
    ]


def _instruction_items(cfg: XibConfig) -> list[tuple[str, str, str]]:
    """(modality, instruction, answer-kind) templates: `data.instruct` templates, the eval prompts and
    the DisCRn Q-Former text, so every word other rooms prompt the LLM with is in its vocabulary."""
    instruct = cfg.data.instruct
    items: list[tuple[str, str, str]] = []
    modalities = list(cfg.data.corpus.modalities)
    for modality in modalities:
        for template in instruct.templates.get("caption", {}).get(modality, []):
            items.append((modality, template, "caption"))
        for template in instruct.templates.get("qa", {}).get(modality, []):
            for attribute in instruct.qa_attributes.get(modality, []):
                for question in instruct.questions.get(attribute, []):
                    items.append((modality, template.replace("{question}", question), f"attr:{attribute}"))
        classified_by = instruct.classify_attribute.get(modality)
        if classified_by:
            for template in instruct.templates.get("classify", {}).get(modality, []):
                items.append((modality, template, f"attr:{classified_by}"))
        prompts = cfg.eval.prompts
        items.append((modality, prompts["caption"], "caption"))
        items.append((modality, cfg.model.prompt.discrn_qformer_text, "caption"))
        items.append((modality, prompts["classify"], "kind"))
    return items


def corpus_lines(cfg: XibConfig) -> list[str]:
    """The whole corpus, shuffled, deterministic from `data.corpus.seed`."""
    corpus_cfg = cfg.data.corpus
    prompt_cfg = cfg.model.prompt
    # Every input is named by its cue here, whatever the prompts over soft tokens use
    # (`use_cues`): the LLM learns the cue words, and a cue switch does not re-pre-train it.
    cues = prompt_cfg.cues
    rng = random.Random(corpus_cfg.seed)
    modalities = list(corpus_cfg.modalities)
    lines: list[str] = []

    all_facts = [fact for kind in KINDS for fact in facts(kind)]
    lines += [rng.choice(all_facts) for _ in range(corpus_cfg.fact_lines)]

    for _ in range(corpus_cfg.caption_lines):
        kind, modality = rng.choice(KINDS), rng.choice(modalities)
        shown = render_text([Slot(0, modality)], [caption(kind, modality)], cues)
        template = rng.choice(list(corpus_cfg.caption_templates))
        lines.append(template.format(input=shown, kind=article(kind.name)).strip())

    # What the comparisons ask about, said of each kind and of each caption: the attributes a
    # comparison needs, so held-out pairs can be answered by composing caption -> kind -> attribute.
    for _ in range(corpus_cfg.knowledge_lines):
        kind, modality = rng.choice(KINDS), rng.choice(modalities)
        subject = (
            render_text([Slot(0, modality)], [caption(kind, modality)], cues)
            if rng.random() < 0.5
            else article(kind.name)
        )
        lines.append(f"{subject} {rng.choice(knowledge(kind, corpus_cfg))}.".strip())

    items = _instruction_items(cfg)
    for _ in range(corpus_cfg.instruction_lines):
        modality, instruction, answer_kind = rng.choice(items)
        kind = rng.choice(KINDS)
        if answer_kind == "caption":
            answer = caption(kind, modality)
        elif answer_kind == "kind":
            answer = article(kind.name)
        else:
            answer = _attribute_answer(kind, answer_kind.split(":", 1)[1])
        text = render_text(instruction_prompt(modality, instruction), [caption(kind, modality)], cues)
        lines.append((text + answer_text(answer)).strip())

    held = set(heldout_kind_pairs(corpus_cfg))
    seen = [p for p in comparable_kind_pairs() if p not in held]
    universe = comparisons(list(corpus_cfg.comparison_pairs), seen, prompt_cfg)
    count = corpus_cfg.comparison_lines
    # Whole shuffled passes over every seen comparison: each pass has exactly balanced answers.
    while count > 0:
        batch = universe[:]
        rng.shuffle(batch)
        for example in batch[:count]:
            lines.append((example.prompt + answer_text(example.answer)).strip())
        count -= len(batch)

    rng.shuffle(lines)
    return lines


def write_corpus(cfg: XibConfig) -> Path:
    """Write `data/world/corpus.txt` (atomically) and return its path."""
    target = corpus_path(cfg)
    lines = corpus_lines(cfg)
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
