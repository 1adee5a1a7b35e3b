"""DisCRn, the paper's discriminative cross-modal reasoning benchmark: data, answer normalisation,
prompt variants (soft tokens, oracle captions, predicted captions, hybrids) and scoring.

An answer names the first input when it says "first", "1st", "left", "(a)" or the first input's
modality name (e.g. "the image"), and symmetrically the second; the earliest mention in the
generated text decides, and an answer naming neither is wrong.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.answers import interpret_answer, interpreter  # noqa: F401 - read here, and imported from here
from xib.errors import DataError
from xib.prompts import Cues, Segment, Slot, discrn_prompt, filled_slot, prompt_cues, render_text

if TYPE_CHECKING:
    from xib.config import XibConfig

REQUIRED = ("id", "pair", "modalities", "sample_ids", "captions", "question", "label")


@dataclass(frozen=True)
class DiscrnItem:
    id: str
    pair: str
    modalities: tuple[str, str]
    sample_ids: tuple[str, str]
    captions: tuple[str, str]
    question: str
    label: int  # 0 = first
    attribute: str = ""
    media: tuple[str, ...] = ()

    @property
    def order(self) -> str:
        """Which modality came first, e.g. `image_first`."""
        return f"{self.modalities[0]}_first"


def load_items(path: str | Path, limit: int = 0) -> list[DiscrnItem]:
    """Read `data/discrn/<pair>/<split>.json`; a malformed row raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "DisCRn file is missing (run `xib discrn`)")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(str(path), "must be a JSON list", detail=str(err)) from None
    if not isinstance(rows, list):
        raise DataError(str(path), "must be a JSON list of DisCRn items")
    items = []
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise DataError(str(path), f"DisCRn item lacks {missing}", row=i)
        if row["label"] not in (0, 1):
            raise DataError(
                str(path), "label must be 0 (first) or 1 (second)", row=i, detail=repr(row["label"])
            )
        for key in ("modalities", "sample_ids", "captions"):
            if not isinstance(row[key], list) or len(row[key]) != 2:
                raise DataError(str(path), f"{key} must list exactly two entries", row=i)
        props = row.get("properties") or {}
        items.append(
            DiscrnItem(
                id=str(row["id"]),
                pair=str(row["pair"]),
                modalities=(str(row["modalities"][0]), str(row["modalities"][1])),
                sample_ids=(str(row["sample_ids"][0]), str(row["sample_ids"][1])),
                captions=(str(row["captions"][0]), str(row["captions"][1])),
                question=str(row["question"]),
                label=int(row["label"]),
                attribute=str(props.get("attribute", "")),
                media=tuple(str(m) for m in row.get("media", [])),
            )
        )
        if limit and len(items) >= limit:
            break
    return items


# --- answer normalisation: xib.answers (shared with the demo LLM's ceiling in xib.models) ------


# --- prompts -------------------------------------------------------------------------------------


def prompt_segments(item: DiscrnItem, prefix: str) -> list[Segment]:
    return discrn_prompt(item.modalities, item.question, prefix)


def text_prompt(item: DiscrnItem, contents: Sequence[str], prefix: str, cues: Cues) -> str:
    """The DisCRn prompt with both inputs as text (oracle or predicted captions)."""
    return render_text(prompt_segments(item, prefix), contents, cues)


def hybrid_segments(item: DiscrnItem, text_index: int, prefix: str, cues: Cues) -> list[Segment]:
    """The DisCRn prompt with input `text_index` as its ground-truth caption, the other a slot."""
    out: list[Segment] = []
    for seg in prompt_segments(item, prefix):
        if isinstance(seg, Slot) and seg.index == text_index:
            out.append(filled_slot(cues[seg.modality], item.captions[text_index]))
        else:
            out.append(seg)
    return out


# --- scoring -------------------------------------------------------------------------------------


@dataclass
class DiscrnResult:
    """Per-item predictions of one scoring method on one pair."""

    items: list[DiscrnItem]
    picks: list[int | None]
    texts: list[str] = field(default_factory=list)

    def correct(self) -> list[bool]:
        return [p is not None and p == it.label for p, it in zip(self.picks, self.items)]

    def accuracy(self) -> float:
        c = self.correct()
        return sum(c) / len(c) if c else 0.0

    def by_order(self) -> dict[str, float]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for it, ok in zip(self.items, self.correct()):
            groups[it.order].append(ok)
        return {order: sum(v) / len(v) for order, v in sorted(groups.items())}

    def confusion(self) -> dict[str, dict[str, int]]:
        """Counts per question attribute of (truth -> prediction): first/second/none."""
        names = {0: "first", 1: "second", None: "none"}
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for it, pick in zip(self.items, self.picks):
            out[it.attribute or "?"][f"{names[it.label]}->{names[pick]}"] += 1
        return {k: dict(v) for k, v in sorted(out.items())}

    def records(self) -> list[dict[str, Any]]:
        return [
            {
                "id": it.id,
                "order": it.order,
                "attribute": it.attribute,
                "label": it.label,
                "pick": p,
                "text": t,
            }
            for it, p, t in zip(self.items, self.picks, self.texts or [""] * len(self.items))
        ]


def picks_from_losses(losses: Sequence[Sequence[float]]) -> list[int | None]:
    """Logit scoring: the answer ("first" or "second") with the lower LM loss."""
    return [0 if row[0] <= row[1] else 1 for row in losses]


def chance_accuracy(items: Sequence[DiscrnItem]) -> float:
    """Accuracy of always answering the majority label (0.5 on balanced data)."""
    if not items:
        return 0.0
    firsts = sum(it.label == 0 for it in items)
    return max(firsts, len(items) - firsts) / len(items)


# --- evaluation with a model -------------------------------------------------------------------------


def evaluate_pair(
    runner: Any,
    pair: str,
    items: Sequence[DiscrnItem],
    cfg: XibConfig,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every DisCRn scoring and baseline of `cfg.eval` on one pair's items.

    Returns metrics (`discrn/<pair>`, `discrn/<pair>/<m>_first`, `discrn/<pair>/logits`, ...,
    `baseline/oracle_caption/<pair>`, `baseline/predicted_caption/<pair>`, `hybrid/<pair>/<m>_as_text`,
    `chance/<pair>`) and details (per-item records and confusion by question type) for plots.
    """
    from xib.models.xinstructblip import fill_slots

    ecfg, pcfg = cfg.eval, cfg.model.prompt
    prefix, qtext = pcfg.discrn_prefix, pcfg.discrn_qformer_text
    cues = prompt_cues(pcfg)
    interpret = interpreter(ecfg.discrn)
    answers = list(ecfg.discrn.answers)
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    if not items:
        return metrics, details

    def inputs(it: DiscrnItem) -> list[Any]:
        return [runner.media(m, s, qtext) for m, s in zip(it.modalities, it.sample_ids)]

    def report(name: str, result: DiscrnResult, orders: bool = False) -> None:
        metrics[name] = result.accuracy()
        if orders:
            for order, acc in result.by_order().items():
                metrics[f"{name}/{order}"] = acc
        details[name] = {"confusion": result.confusion(), "records": result.records()}

    def generate(prompts: Sequence[Any], desc: str) -> DiscrnResult:
        texts = runner.generate(prompts, desc=desc)
        picks = [interpret(t, it.modalities) for t, it in zip(texts, items)]
        return DiscrnResult(list(items), picks, texts)

    def logits(prompts: Sequence[Any], desc: str) -> DiscrnResult:
        losses = runner.score(prompts, [answers] * len(prompts), desc=desc)
        return DiscrnResult(list(items), picks_from_losses(losses))

    soft = [fill_slots(prompt_segments(it, prefix), inputs(it)) for it in items]
    if "generate" in ecfg.discrn_scoring:
        result = generate(soft, f"discrn/{pair}")
        report(f"discrn/{pair}", result, orders=True)
        # the share of answers that name an input at all (higher is better, like every gated metric)
        metrics[f"discrn/{pair}/answered"] = sum(p is not None for p in result.picks) / len(items)
    if "logits" in ecfg.discrn_scoring:
        report(f"discrn/{pair}/logits", logits(soft, f"discrn-logits/{pair}"), orders=True)

    baselines = set(ecfg.baselines)
    if "oracle_caption" in baselines:
        oracle = [text_prompt(it, it.captions, prefix, cues) for it in items]
        report(
            f"baseline/oracle_caption/{pair}", generate([[p] for p in oracle], f"oracle/{pair}"), orders=True
        )
        if "logits" in ecfg.discrn_scoring:
            report(
                f"baseline/oracle_caption/{pair}/logits",
                logits([[p] for p in oracle], f"oracle-logits/{pair}"),
            )
    if "predicted_caption" in baselines:
        captions, predicted = predicted_caption_prompts(
            runner, pair, items, ecfg.prompts["caption"], prefix, cues
        )
        result = generate([[p] for p in predicted], f"predicted/{pair}")
        report(f"baseline/predicted_caption/{pair}", result, orders=True)
        details[f"baseline/predicted_caption/{pair}"]["captions"] = captions
    if "hybrid" in baselines:
        for modality in dict.fromkeys(m for it in items for m in it.modalities):
            prompts = [
                fill_slots(hybrid_segments(it, it.modalities.index(modality), prefix, cues), inputs(it))
                for it in items
            ]
            report(f"hybrid/{pair}/{modality}_as_text", generate(prompts, f"hybrid-{modality}/{pair}"))
    if "chance" in baselines:
        metrics[f"chance/{pair}"] = chance_accuracy(items)
    return metrics, details


def predicted_caption_prompts(
    runner: Any, pair: str, items: Sequence[DiscrnItem], instruction: str, prefix: str, cues: Cues
) -> tuple[list[str], list[str]]:
    """The predicted-caption baseline's first step: the model captions every input on its own, and
    each item's question is then asked about its two captions as text. Returns (captions, prompts)."""
    from xib.models.xinstructblip import fill_slots
    from xib.prompts import instruction_prompt

    caption_prompts = [
        fill_slots(instruction_prompt(m, instruction), [runner.media(m, s, instruction)])
        for it in items
        for m, s in zip(it.modalities, it.sample_ids)
    ]
    captions = runner.generate(caption_prompts, desc=f"captions/{pair}")
    predicted = [
        text_prompt(it, (captions[2 * i], captions[2 * i + 1]), prefix, cues) for i, it in enumerate(items)
    ]
    return captions, predicted
