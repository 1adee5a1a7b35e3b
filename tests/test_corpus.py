"""The demo LLM's corpus: deterministic, in the exact prompt layouts, balanced, held-out pairs kept out."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from xib.config import load_config
from xib.data import corpus as C
from xib.data.world import KINDS, KINDS_BY_NAME, caption
from xib.prompts import discrn_prompt, render_text

SMALL = [
    "data.corpus.fact_lines=40",
    "data.corpus.caption_lines=80",
    "data.corpus.knowledge_lines=60",
    "data.corpus.instruction_lines=80",
    "data.corpus.comparison_pairs=[image_pc,pc_image,audio_video,video_audio]",
]


def _cfg(extra: list[str] | None = None):
    return load_config(SMALL + list(extra or []))


def _parse_comparison(line: str, cfg) -> tuple[str, str, str, str, str, str] | None:
    """(m1, caption1, m2, caption2, question, answer) of a DisCRn-layout line, else None."""
    prefix = cfg.model.prompt.discrn_prefix
    if not line.startswith(prefix):
        return None
    cues = {cue.strip(): m for m, cue in cfg.model.prompt.cues.items()}
    cue = "|".join(re.escape(c) for c in cues)
    match = re.fullmatch(
        rf" ({cue}) (.+?) ({cue}) (.+?) question: (.+\?) answer: (first|second)", line[len(prefix) :]
    )
    assert match is not None, f"comparison line not in the DisCRn layout: {line!r}"
    c1, cap1, c2, cap2, question, answer = match.groups()
    return cues[c1], cap1, cues[c2], cap2, question, answer


def _kind_of(modality: str, text: str) -> str:
    hits = [k.name for k in KINDS if caption(k, modality) == text]
    assert len(hits) == 1, (modality, text)
    return hits[0]


def test_corpus_is_deterministic_atomic_and_covers_every_line_type(xib_root: Path) -> None:
    pairs = ["data.corpus.comparison_pairs=[image_pc,pc_image]", "data.corpus.heldout_kind_pairs=60"]
    cfg = _cfg(pairs)
    universe = len(
        C.comparisons(
            list(cfg.data.corpus.comparison_pairs),
            [p for p in C.comparable_kind_pairs() if p not in set(C.heldout_kind_pairs(cfg.data.corpus))],
            cfg.model.prompt,
        )
    )
    cfg = _cfg([*pairs, f"data.corpus.comparison_lines={universe}"])
    path = C.write_corpus(cfg)
    assert path == xib_root / "data" / "world" / "corpus.txt"
    first = path.read_bytes()
    assert C.write_corpus(cfg).read_bytes() == first
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    lines = first.decode().splitlines()
    assert len(lines) == 40 + 80 + 60 + 80 + universe
    cfg.data.corpus.seed = 7
    assert C.corpus_lines(cfg) != lines

    comparisons = [c for c in (_parse_comparison(line, cfg) for line in lines) if c is not None]
    assert len(comparisons) == universe
    # One full pass: every seen comparison once, both orders of each pair, answers exactly 50/50.
    answers = Counter(c[5] for c in comparisons)
    assert answers["first"] == answers["second"] == universe // 2
    orders = Counter(f"{c[0]}_{c[2]}" for c in comparisons)
    assert orders["image_pc"] == orders["pc_image"] == universe // 2
    # Caption lines for every modality; single-input instruction lines in the instruct templates' wording.
    assert {
        m for m, cue in cfg.model.prompt.cues.items() for line in lines if line.startswith(cue.strip())
    } == {
        "image",
        "pc",
        "audio",
        "video",
    }
    assert any(line.endswith(" is a dog.") or line.endswith(" shows a dog.") for line in lines)
    captioning = [
        f"{cue}{caption(k, m)} {t}"
        for m, cue in cfg.model.prompt.cues.items()
        for k in KINDS
        for t in cfg.data.instruct.templates["caption"][m]
    ]
    assert any(line.strip().startswith(c.strip()) for line in lines for c in captioning)
    assert any(
        re.search(r" (is|are) (still|slow|fast|very fast|quiet|loud|very loud)\.$", line) for line in lines
    )
    kind_facts = [line for line in lines if re.fullmatch(r"an? \w+ (is|lives|makes|can|cannot) .*\.", line)]
    assert kind_facts


def test_comparisons_are_true_in_the_exact_prompt_layout_and_skip_held_out_pairs(xib_root: Path) -> None:
    cfg = _cfg(["data.corpus.comparison_lines=1000", "data.corpus.heldout_kind_pairs=20"])
    held = set(C.heldout_kind_pairs(cfg.data.corpus))
    assert len(held) == 20
    lines = C.corpus_lines(cfg)
    seen_pairs = set()
    for line in lines:
        parsed = _parse_comparison(line, cfg)
        if parsed is None:
            continue
        m1, cap1, m2, cap2, question, answer = parsed
        k1, k2 = _kind_of(m1, cap1), _kind_of(m2, cap2)
        assert tuple(sorted((k1, k2))) not in held
        seen_pairs.add(tuple(sorted((k1, k2))))
        expected = render_text(
            discrn_prompt([m1, m2], question, cfg.model.prompt.discrn_prefix),
            [cap1, cap2],
            cfg.model.prompt.cues,
        )
        assert line == expected + f" {answer}"
        truth = [q for q in C.QUESTIONS if q.text == question]
        assert len(truth) == 1
        label = truth[0].answer(KINDS_BY_NAME[k1], KINDS_BY_NAME[k2])
        assert label is not None and ("first", "second")[label] == answer
    assert len(seen_pairs) > 50


def test_vocabulary_covers_the_prompts_other_stages_send(xib_root: Path) -> None:
    cfg = _cfg(["data.corpus.comparison_lines=200", "data.corpus.instruction_lines=1500"])
    words = {w for line in C.corpus_lines(cfg) for w in re.findall(r"\w+|[^\w\s]", line)}
    needed = [
        cfg.model.prompt.discrn_prefix,
        cfg.model.prompt.discrn_qformer_text,
        *cfg.model.prompt.cues.values(),
        cfg.eval.prompts["caption"],
        cfg.eval.prompts["classify"],
        *[t for task in cfg.data.instruct.templates.values() for ts in task.values() for t in ts],
        *[q for qs in cfg.data.instruct.questions.values() for q in qs],
    ]
    missing = {
        w for text in needed for w in re.findall(r"\w+|[^\w\s]", text.replace("{question}", ""))
    } - words
    assert not missing


def test_bad_corpus_config_is_refused() -> None:
    with pytest.raises(ValueError, match="heldout_kind_pairs"):
        C.heldout_kind_pairs(_cfg(["data.corpus.heldout_kind_pairs=500"]).data.corpus)
    with pytest.raises(ValueError, match="modality pair"):
        C.parse_pair("image_image")


def test_every_input_is_cued_whatever_the_soft_token_prompts_use(xib_root: Path) -> None:
    """The cue switch is for prompts over soft tokens; the LLM's corpus (and so its weights) stays."""
    cued = C.corpus_lines(_cfg())
    assert C.corpus_lines(_cfg(["model.prompt.use_cues=false"])) == cued
    assert (
        C.corpus_lines(
            _cfg(
                [
                    "model.prompt.use_cues_by_modality.audio=false",
                    "model.prompt.use_cues_by_modality.video=false",
                ]
            )
        )
        == cued
    )
    cues = _cfg().model.prompt.cues
    assert all(any(cue.strip() in line for line in cued) for cue in cues.values())
