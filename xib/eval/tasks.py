"""Single-modality benchmarks (captioning, QA, classification) and the model runner they share
with DisCRn and serving: cached features or raw media in, batched generation and scoring out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xib.data.config import TASKS
from xib.errors import DataError, XibError
from xib.eval import metrics as M
from xib.prompts import discrn_prompt, instruction_prompt

log = logging.getLogger(__name__)


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


class Runner:
    """An XInstructBLIP with its inputs: feature caches for benchmarks, frozen encoders for raw media.

    `batch_size` bounds every model call; `batch_size=1` is the one-sample-at-a-time baseline.
    """

    def __init__(
        self,
        model: Any,
        cfg: Any,
        batch_size: int = 32,
        feature_dirs: Mapping[str, Path] | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.batch_size = max(1, int(batch_size))
        self.feature_dirs = dict(feature_dirs or {})
        self.progress = progress
        self._stores: dict[str, Any] = {}

    # --- inputs -----------------------------------------------------------------------------------
    def store(self, modality: str) -> Any:
        if modality not in self._stores:
            from xib.train.features import FeatureStore

            if modality not in self.feature_dirs:
                raise XibError(f"no feature cache configured for {modality}")
            self._stores[modality] = FeatureStore(self.feature_dirs[modality])
        return self._stores[modality]

    def media(self, modality: str, item_id: str, instruction: str) -> Any:
        """The cached encoder output of one item as a model input, with its Q-Former text."""
        from xib.models.xinstructblip import MediaInput

        features, mask = self.store(modality).get(item_id)
        return MediaInput(modality, features, mask, instruction=instruction)

    def encode(self, modality: str, data: bytes, instruction: str) -> Any:
        """Raw media bytes through the frozen encoder (as the feature cache would)."""
        import torch

        from xib.data.media import decode
        from xib.models.xinstructblip import MediaInput

        encoders = getattr(self.model, "encoders", None)
        if encoders is None or modality not in encoders:
            have = sorted(encoders) if encoders is not None else []
            raise XibError(f"this model answers over {have}, not {modality}")
        encoder = encoders[modality]
        try:
            if modality == "audio":
                array = _audio_at(data, int(encoder.cfg.sample_rate))
            else:
                array = decode(modality, data)
        except ValueError as err:
            raise XibError(f"cannot read the {modality} input: {err}") from None
        with torch.no_grad():
            out = encoder(encoder.preprocess([array]))
        return MediaInput(modality, out.features[0].float(), out.mask[0], instruction=instruction)

    # --- model calls ------------------------------------------------------------------------------
    def _chunks(self, n: int) -> list[range]:
        return [range(i, min(n, i + self.batch_size)) for i in range(0, n, self.batch_size)]

    def generate(self, prompts: Sequence[Sequence[Any]], desc: str = "generate") -> list[str]:
        out: list[str] = []
        chunks = self._chunks(len(prompts))
        for chunk in _progress(chunks, len(chunks), desc, self.progress):
            out += self.model.generate([prompts[i] for i in chunk], batch_size=self.batch_size)
        return out

    def score(
        self, prompts: Sequence[Sequence[Any]], candidates: Sequence[Sequence[str]], desc: str = "score"
    ) -> list[list[float]]:
        """Mean LM loss of each candidate per prompt; batches hold `batch_size` (prompt, candidate) pairs."""
        out: list[list[float]] = []
        per = max(1, self.batch_size // max(1, max((len(c) for c in candidates), default=1)))
        chunks = [range(i, min(len(prompts), i + per)) for i in range(0, len(prompts), per)]
        for chunk in _progress(chunks, len(chunks), desc, self.progress):
            out += self.model.score_candidates(
                [prompts[i] for i in chunk], [list(candidates[i]) for i in chunk], batch_size=self.batch_size
            )
        return out

    # --- serving ----------------------------------------------------------------------------------
    def ask(self, media: Sequence[tuple[str, bytes]], question: str) -> str:
        """Answer `question` over media files of any modalities, in the layout the model was trained on:
        one input -> the single-input instruction layout; several -> the DisCRn layout."""
        from xib.models.xinstructblip import fill_slots

        prompt_cfg = self.cfg.model.prompt
        if len(media) == 1:
            modality, data = media[0]
            inputs = [self.encode(modality, data, question)]
            segments = instruction_prompt(modality, question)
        else:
            qtext = str(prompt_cfg.discrn_qformer_text)
            inputs = [self.encode(m, data, qtext) for m, data in media]
            segments = discrn_prompt([m for m, _ in media], question, str(prompt_cfg.discrn_prefix))
        return self.model.generate([fill_slots(segments, inputs)], batch_size=1)[0]


def _audio_at(data: bytes, rate: int) -> Any:
    """A WAV decoded and linearly resampled to the encoder's sample rate."""
    import numpy as np

    from xib.data.media import decode_audio

    wave, sr = decode_audio(data)
    if sr == rate or wave.size == 0:
        return wave
    n = max(1, round(wave.size * rate / sr))
    return np.interp(np.arange(n) * (sr / rate), np.arange(wave.size), wave).astype(np.float32)


def load_model_from_dirs(
    cfg: Any, checkpoint_dirs: Mapping[str, str | Path], with_encoders: bool = True
) -> Runner:
    """Compose the model from projection checkpoints (and the frozen encoders) for inference."""
    import torch

    from xib.models.checkpoint import compose_model

    threads = cfg.eval.threads
    if threads > 0:
        torch.set_num_threads(threads)
    model = compose_model(
        cfg.model, {m: Path(d) for m, d in checkpoint_dirs.items()}, with_encoders=with_encoders
    )
    model.eval()
    return Runner(model, cfg, batch_size=cfg.eval.batch_size, progress=False)


# --- instruction data ------------------------------------------------------------------------------


def read_records(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    """Rows of `data/instruct/<m>/<split>.jsonl`; a malformed row raises DataError naming it."""
    if not path.is_file():
        raise DataError(str(path), "instruction file is missing (run `xib instruct`)")
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TASKS}
    with path.open() as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    str(path), "each line must be one JSON object", row=line_no, detail=str(err)
                ) from None
            for key in ("item_id", "instruction", "answer", "task"):
                if not isinstance(row.get(key), str) or not row[key]:
                    raise DataError(str(path), f"record lacks {key}", row=line_no)
            if row["task"] not in rows:
                continue
            if row["task"] == "classify":
                cands = row.get("candidates")
                if not isinstance(cands, list) or row["answer"] not in cands:
                    raise DataError(
                        str(path), "classify record's answer must be one of its candidates", row=line_no
                    )
            row["_line"] = line_no
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
            for p, r, y in zip(picks, cls_rows, labels):
                record("classify", r, r["candidates"][p], float(p == y))
        if "generate" in classify_scoring:
            texts = runner.generate(prompts, desc=f"classify-gen/{modality}")
            gen_picks = [M.match_candidate(t, r["candidates"]) for t, r in zip(texts, cls_rows)]
            metrics[f"classify/{modality}/generate_accuracy"] = M.accuracy(gen_picks, labels)
    return metrics, predictions
