"""The text layout of every prompt xib builds, in one place.

A prompt is a list of segments: text, or `Slot(i)` where input i goes (its cue, then its soft
tokens in the model, or its caption in the text-only renderings that pre-train the demo LLM and
make the oracle-caption baseline). The model, the corpus and the evaluator all build prompts here,
so the LLM sees at inference exactly the layout it was pre-trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ANSWERS = ("first", "second")


@dataclass(frozen=True)
class Slot:
    """Where input `index` of the prompt goes; `modality` picks its cue."""

    index: int
    modality: str


Segment = str | Slot


def instruction_prompt(modality: str, instruction: str) -> list[Segment]:
    """One input then its instruction: `[cue][queries] instruction` (answer follows)."""
    return [Slot(0, modality), f" {instruction}"]


def discrn_prompt(modalities: Sequence[str], question: str, prefix: str) -> list[Segment]:
    """The paper's DisCRn layout: prefix, then each input in order, then `question: ... answer:`."""
    segments: list[Segment] = [prefix] if prefix else []
    segments += [Slot(i, m) for i, m in enumerate(modalities)]
    segments.append(f" question: {question} answer:")
    return segments


def answer_text(answer: str) -> str:
    """Answers follow the prompt after one space."""
    return f" {answer}"


def render_text(
    segments: Sequence[Segment],
    contents: Sequence[str],
    cues: Mapping[str, str],
    use_cues: bool = True,
) -> str:
    """The prompt as plain text, each slot filled by `cue + contents[i]` (captions)."""
    parts = []
    for segment in segments:
        if isinstance(segment, Slot):
            cue = cues[segment.modality] if use_cues else " "
            parts.append(cue + contents[segment.index])
        else:
            parts.append(segment)
    return "".join(parts)
