"""Single-modality benchmarks (captioning, QA, classification) over the runtime's `Runner`
(`xib.runtime.runner`): cached features in, batched generation and scoring out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xib.data.config import TASKS
from xib.data.instructions import read_instructions
from xib.eval import metrics as M
from xib.prompts import instruction_prompt
from xib.runtime.runner import Runner

log = logging.getLogger(__name__)


# --- instruction data ------------------------------------------------------------------------------


def read_records(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    """The benchmark rows of an instruction file (`xib.data.instructions` rules), grouped by task in
    `TASKS` order, at most `limit` per task (0: all); rows of other tasks are not benchmarks."""
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TASKS}
    for row in read_instructions(path):
        if row["task"] in rows:
            rows[row["task"]].append(row)
    out: list[dict[str, Any]] = []
    for task in TASKS:
        out += rows[task][:limit] if limit else rows[task]
    return out


def _prompts(runner: Runner, modality: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    from xib.models.xinstructblip import fill_slots

    return [
        fill_slots(
            instruction_prompt(modality, r["instruction"]),
            [runner.media(modality, r["item_id"], r["instruction"])],
        )
        for r in rows
    ]


def evaluate_modality(
    runner: Runner,
    modality: str,
    rows: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    classify_scoring: Sequence[str],
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (`caption/<m>/cider`, `qa/<m>/accuracy`, `classify/<m>/accuracy`, ...) and predictions."""
    metrics: dict[str, float] = {}
    predictions: list[dict[str, Any]] = []
    by_task = {t: [r for r in rows if r["task"] == t] for t in tasks}

    def record(task: str, row: Mapping[str, Any], pred: str, ok: float | None = None) -> None:
        predictions.append(
            {"task": task, "modality": modality, "id": row.get("id", row["item_id"]), "prediction": pred,
             "answer": row["answer"], "correct": ok}
        )  # fmt: skip

    caption_rows = by_task.get("caption", [])
    if caption_rows:
        preds = runner.generate(_prompts(runner, modality, caption_rows), desc=f"caption/{modality}")
        keys = [f"{i}" for i in range(len(caption_rows))]
        scores = M.caption_scores(
            dict(zip(keys, preds)), {k: [r["answer"]] for k, r in zip(keys, caption_rows)}
        )
        for name, value in scores.items():
            metrics[f"caption/{modality}/{name}"] = value
        metrics[f"caption/{modality}/exact_match"] = M.mean(
            [M.exact_match(p, r["answer"]) for p, r in zip(preds, caption_rows)]
        )
        for p, r in zip(preds, caption_rows):
            record("caption", r, p)

    qa_rows = by_task.get("qa", [])
    if qa_rows:
        preds = runner.generate(_prompts(runner, modality, qa_rows), desc=f"qa/{modality}")
        oks = [M.vqa_accuracy(p, r.get("answers") or [r["answer"]]) for p, r in zip(preds, qa_rows)]
        metrics[f"qa/{modality}/accuracy"] = M.mean(oks)
        for p, r, ok in zip(preds, qa_rows, oks):
            record("qa", r, p, ok)

    cls_rows = by_task.get("classify", [])
    if cls_rows:
        labels = [list(r["candidates"]).index(r["answer"]) for r in cls_rows]
        prompts = _prompts(runner, modality, cls_rows)
        if "loss" in classify_scoring:
            losses = runner.score(prompts, [r["candidates"] for r in cls_rows], desc=f"classify/{modality}")
            picks = M.rank_by_loss(losses)
            metrics[f"classify/{modality}/accuracy"] = M.accuracy(picks, labels)
            for pick, r, y in zip(picks, cls_rows, labels):
                record("classify", r, r["candidates"][pick], float(pick == y))
        if "generate" in classify_scoring:
            texts = runner.generate(prompts, desc=f"classify-gen/{modality}")
            gen_picks = [M.match_candidate(t, r["candidates"]) for t, r in zip(texts, cls_rows)]
            metrics[f"classify/{modality}/generate_accuracy"] = M.accuracy(gen_picks, labels)
    return metrics, predictions
