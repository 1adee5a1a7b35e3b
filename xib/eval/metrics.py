"""Metrics of the single-modality benchmarks: captioning (CIDEr, BLEU-4, ROUGE-L), QA (VQA accuracy,
exact match) and classification (candidates ranked by LM loss, or generate-and-match).

Caption scorers come from pycocoevalcap (the COCO caption evaluation code). Its PTB tokenizer needs
Java, so captions are tokenised here the simple way: lower case, punctuation dropped, split on space.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# --- tokenisation for caption metrics -------------------------------------------------------

_PUNCT = re.compile(r"[^\w\s']|_")


def caption_tokens(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the tokenised form the scorers expect."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _coco_inputs(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    if set(predictions) != set(references):
        missing = sorted(set(references) ^ set(predictions))[:5]
        raise ValueError(f"predictions and references cover different ids, e.g. {missing}")
    gts: dict[str, list[str]] = {}
    res: dict[str, list[str]] = {}
    for key, refs in references.items():
        if not refs:
            raise ValueError(f"item {key!r} has no reference caption")
        gts[key] = [caption_tokens(r) for r in refs]
        res[key] = [caption_tokens(predictions[key])]
    return gts, res


def cider(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> float:
    """Corpus CIDEr-D-style score (pycocoevalcap Cider: n=4, sigma=6, IDF over this corpus)."""
    from pycocoevalcap.cider.cider import Cider

    if not predictions:
        return 0.0
    gts, res = _coco_inputs(predictions, references)
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def bleu4(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> float:
    """Corpus BLEU-4 (pycocoevalcap Bleu, 'closest' reference length)."""
    import contextlib
    import io

    from pycocoevalcap.bleu.bleu import Bleu

    if not predictions:
        return 0.0
    gts, res = _coco_inputs(predictions, references)
    with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its internals
        score, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(score[3])


def rouge_l(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> float:
    """Mean ROUGE-L F-measure (pycocoevalcap Rouge, beta 1.2)."""
    from pycocoevalcap.rouge.rouge import Rouge

    if not predictions:
        return 0.0
    gts, res = _coco_inputs(predictions, references)
    score, _ = Rouge().compute_score(gts, res)
    return float(score)


def caption_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    return {
        "cider": cider(predictions, references),
        "bleu4": bleu4(predictions, references),
        "rouge_l": rouge_l(predictions, references),
    }


# --- VQA answer normalisation (the rules of the official VQA evaluation) ---------------------

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "im": "i'm", "ive": "i've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "lets": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "shant": "shan't", "shed": "she'd", "shes": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "thats": "that's", "thered": "there'd", "theres": "there's", "theyd": "they'd",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "wasnt": "wasn't", "wed": "we'd",
    "weve": "we've", "werent": "weren't", "whats": "what's", "whens": "when's", "wheres": "where's",
    "whod": "who'd", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "yall": "y'all", "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_VQA_PUNCT = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _strip_punctuation(text: str) -> str:
    out = text
    for p in _VQA_PUNCT:
        # Punctuation glued between words is dropped; punctuation next to a space becomes a space.
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def normalize_answer(text: str) -> str:
    """VQA normalisation: lower case, punctuation, number words to digits, articles, contractions."""
    text = " ".join(text.replace("\n", " ").replace("\t", " ").strip().lower().split())
    text = _strip_punctuation(text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction.

    With the VQA setting's many human answers (3 or more), min(1, matches/3) averaged over every
    leave-one-out subset, as the official evaluation does. With fewer references (generated
    instruction data has one), it is exact match after normalisation.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if len(gts) < 3:
        return float(pred in gts)
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        scores.append(min(1.0, sum(g == pred for g in others) / 3.0))
    return sum(scores) / len(scores)


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# --- classification ---------------------------------------------------------------------------


def rank_by_loss(losses: Sequence[Sequence[float]]) -> list[int]:
    """Index of the candidate with the lowest LM loss, per item (the paper's ModelNet40/ESC-50 way)."""
    picks = []
    for row in losses:
        row = list(row)
        if not row:
            raise ValueError("an item has no candidates to rank")
        picks.append(min(range(len(row)), key=row.__getitem__))
    return picks


def match_candidate(generated: str, candidates: Sequence[str]) -> int | None:
    """The candidate a generated answer names: exact after normalisation, else the one candidate
    contained in it as whole words (the longest, when one candidate contains another); None if none."""
    gen = normalize_answer(generated)
    norms = [normalize_answer(c) for c in candidates]
    for i, cand in enumerate(norms):
        if gen == cand:
            return i
    padded = f" {gen} "
    hits = [i for i, cand in enumerate(norms) if cand and f" {cand} " in padded]
    if not hits:
        return None
    hits.sort(key=lambda i: len(norms[i]), reverse=True)
    # Two unrelated candidates both named (e.g. "a cat or a dog") is no answer.
    if len(hits) > 1 and norms[hits[1]] not in norms[hits[0]]:
        return None
    return hits[0]


def accuracy(picks: Sequence[int | None], labels: Sequence[int]) -> float:
    if len(picks) != len(labels):
        raise ValueError(f"{len(picks)} predictions for {len(labels)} labels")
    return mean([float(p is not None and p == y) for p, y in zip(picks, labels)])
