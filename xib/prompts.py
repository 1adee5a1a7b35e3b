"""The text layout of every prompt xib builds, in one place.

A prompt is a list of segments: text, or `Slot(i)` where input i goes (its cue, then its soft
tokens in the model, or its caption in the text-only renderings that pre-train the demo LLM and
make the oracle-caption baseline). The model, the corpus and the evaluator all build prompts here,
so the LLM sees at inference exactly the layout it was pre-trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xib.models.config import PromptConfig

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


Cues = Mapping[str, "str | None"]


def prompt_cues(prompt_cfg: PromptConfig) -> dict[str, str | None]:
    """Each modality's cue as prompts over its soft tokens use it: None where it is switched off,
    for every modality (`model.prompt.use_cues: false`) or for one (`use_cues_by_modality`)."""
    table = prompt_cfg.use_cues_by_modality or {}
    return {
        modality: str(cue) if prompt_cfg.use_cues and table.get(modality, True) else None
        for modality, cue in prompt_cfg.cues.items()
    }


def filled_slot(cue: str | None, content: str) -> str:
    """A slot as text: its cue then its caption; without a cue a space still parts it from the text before."""
    return (" " if cue is None else cue) + content


def render_text(segments: Sequence[Segment], contents: Sequence[str], cues: Cues) -> str:
    """The prompt as plain text, each slot filled by its cue and `contents[i]` (captions)."""
    parts = []
    for segment in segments:
        if isinstance(segment, Slot):
            parts.append(filled_slot(cues[segment.modality], contents[segment.index]))
        else:
            parts.append(segment)
    return "".join(parts)
