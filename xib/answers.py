"""Reading a generated DisCRn answer: which of the two inputs it names (the paper's normalisation).

Shared by the evaluator (xib.eval.discrn) and the demo LLM's text-only ceiling (xib.models.bootstrap_llm).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xib.eval.config import DiscrnEvalConfig


def _pattern(phrase: str) -> re.Pattern[str]:
    phrase = phrase.lower().strip()
    # Word boundaries only where the phrase itself starts/ends with a word character.
    left = r"(?<!\w)" if phrase[:1].isalnum() else ""
    right = r"(?!\w)" if phrase[-1:].isalnum() else ""
    return re.compile(left + r"\s+".join(re.escape(w) for w in phrase.split()) + right)


def interpret_answer(
    text: str,
    modalities: Sequence[str],
    first_words: Sequence[str],
    second_words: Sequence[str],
    modality_names: Mapping[str, Sequence[str]],
) -> int | None:
    """0 when the answer names the first input, 1 the second, None when it names neither.

    Synonyms: `first_words` / `second_words` (first, 1st, left, (a) ...) and the names of each
    input's modality. The earliest mention wins; at one position the longest phrase does.
    """
    lowered = text.lower()
    phrases: list[tuple[str, int]] = [(w, 0) for w in first_words] + [(w, 1) for w in second_words]
    if modalities[0] != modalities[1]:
        phrases += [(n, 0) for n in modality_names.get(modalities[0], [modalities[0]])]
        phrases += [(n, 1) for n in modality_names.get(modalities[1], [modalities[1]])]
    best: tuple[int, int, int] | None = None  # (position, -length, side)
    for phrase, side in phrases:
        if not phrase.strip():
            continue
        match = _pattern(phrase).search(lowered)
        if match is None:
            continue
        key = (match.start(), -(match.end() - match.start()), side)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def interpreter(discrn_cfg: DiscrnEvalConfig) -> Callable[[str, Sequence[str]], int | None]:
    """`interpret_answer` bound to the synonyms of `cfg.eval.discrn`."""
    first = list(discrn_cfg.first_words)
    second = list(discrn_cfg.second_words)
    names = {k: list(v) for k, v in discrn_cfg.modality_names.items()}

    def interpret(text: str, modalities: Sequence[str]) -> int | None:
        return interpret_answer(text, modalities, first, second, names)

    return interpret
