"""The paper's filter on generated QA pairs: the answer must be a span of the caption, and a second
pass that answers the generated question from the caption alone must give the answer back.

Both checks are fuzzy (RapidFuzz, scores 0-100, kept when above a threshold: 90 in the paper):
- answer in caption: `partial_ratio` (the best-matching caption substring), as the reference code;
- round trip: `ratio` of the whole strings. The reference used `partial_ratio` here too, but that
  scores 100 whenever one string is contained in the other ("a" vs "barking"), which lets a model
  that emits one letter pass; the full ratio does not.
Strings are compared lower-cased with punctuation and surplus whitespace removed; the round trip
also ignores articles ("a dog" answers "dog").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^a-z0-9]+")
_ARTICLES = frozenset({"a", "an", "the"})


def normalize(text: str, drop_articles: bool = False) -> str:
    words = _NON_WORD.sub(" ", text.lower()).split()
    return " ".join(w for w in words if not (drop_articles and w in _ARTICLES))


def answer_in_caption_score(answer: str, caption: str) -> float:
    from rapidfuzz import fuzz

    a, c = normalize(answer), normalize(caption)
    if not a or not c:
        return 0.0
    return float(fuzz.partial_ratio(a, c))


def round_trip_score(round_trip: str, answer: str) -> float:
    from rapidfuzz import fuzz

    r, a = normalize(round_trip, drop_articles=True), normalize(answer, drop_articles=True)
    if not r or not a:
        return 0.0
    return float(fuzz.ratio(r, a))


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str  # "kept" | "short_answer" | "no_question" | "not_in_caption" | "round_trip"
    in_caption: float
    round_trip: float


def judge(
    answer: str, question: str, round_trip: str, caption: str, threshold: float, min_answer_chars: int = 1
) -> Verdict:
    """Whether one (answer, question) pair generated from `caption` survives the filter, and why not."""
    in_caption = answer_in_caption_score(answer, caption)
    trip = round_trip_score(round_trip, answer)
    if len(normalize(answer)) < max(1, min_answer_chars):
        return Verdict(False, "short_answer", in_caption, trip)
    if not normalize(question):
        return Verdict(False, "no_question", in_caption, trip)
    if in_caption <= threshold:
        return Verdict(False, "not_in_caption", in_caption, trip)
    if trip <= threshold:
        return Verdict(False, "round_trip", in_caption, trip)
    return Verdict(True, "kept", in_caption, trip)
