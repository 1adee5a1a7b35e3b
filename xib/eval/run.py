"""`xib eval`: every benchmark of the candidate in `artifacts/align/`, written atomically.

Outputs under `cfg.eval.output` (default `artifacts/eval/`):
- `metrics.json`: flat {metric: value} (a DVC metrics file), written last;
- `candidate.json`: what was evaluated (checkpoint hashes, encoder fingerprints, data hashes);
  the gate registers a candidate only when its checkpoints still match these hashes;
- `report.json`: predictions, DisCRn records and confusion, timings;
- `plots/*.png`.
Nothing is written unless every benchmark finished, and then all of it at once (`xib.eval.publish`:
checked for space and writability before the work, staged, swapped in by one rename).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.io import write_json
from xib.runtime.checkpoints import checkpoint_dirs

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)


def candidate_provenance(cfg: XibConfig, checkpoints: dict[str, Path]) -> dict[str, Any]:
    from xib.hashing import checkpoint_hashes, data_hashes
    from xib.models.checkpoint import read_projection_info

    fingerprints = {}
    for modality, folder in checkpoints.items():
        info = read_projection_info(folder)
        fingerprints[modality] = str(info.get("provenance", {}).get("encoder_fingerprint", ""))
    return {
        "checkpoints": checkpoint_hashes(checkpoints),
        "fingerprints": fingerprints,
        "data": data_hashes(cfg),
        "llm": cfg.model.llm.path,
        "split": cfg.eval.split,
    }


def build_runner(cfg: XibConfig, checkpoints: dict[str, Path], batch_size: int | None = None) -> Any:
    import torch

    from xib.models.checkpoint import compose_model
    from xib.runtime.runner import Runner
    from xib.train import determinism
    from xib.train.features import cache_dir

    determinism.apply(cfg, cfg.eval.threads if cfg.eval.threads > 0 else torch.get_num_threads())
    model = compose_model(cfg.model, checkpoints)
    model.eval()
    feature_dirs = {m: cache_dir(cfg, m, cfg.eval.split) for m in checkpoints}
    return Runner(model, cfg, batch_size=batch_size or cfg.eval.batch_size, feature_dirs=feature_dirs)


def evaluate(cfg: XibConfig, runner: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """All benchmarks with `runner`; returns (metrics, report). Writes nothing."""
    from xib.eval.discrn import evaluate_pair, load_items
    from xib.eval.tasks import evaluate_modality, read_records

    split, limit = cfg.eval.split, cfg.eval.max_items_per_task
    data = Path(cfg.paths.data)
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {"predictions": [], "discrn": {}, "timings": {}}
    available = set(runner.feature_dirs)
    for modality in cfg.eval.modalities:
        start = time.perf_counter()
        rows = read_records(data / "instruct" / modality / f"{split}.jsonl", limit)
        values, preds = evaluate_modality(
            runner, modality, rows, list(cfg.eval.tasks), list(cfg.eval.classify_scoring)
        )
        metrics.update(values)
        report["predictions"] += preds
        report["timings"][f"single/{modality}"] = {"items": len(rows), "seconds": time.perf_counter() - start}
        log.info("%s: %s", modality, {k: round(v, 4) for k, v in values.items()})
    for pair in cfg.eval.discrn.pairs:
        items = load_items(data / "discrn" / pair / f"{split}.json", cfg.eval.discrn.max_items)
        needed = {m for it in items for m in it.modalities}
        if not needed <= available:
            log.warning("DisCRn %s skipped: no projection for %s", pair, sorted(needed - available))
            continue
        start = time.perf_counter()
        values, details = evaluate_pair(runner, pair, items, cfg)
        metrics.update(values)
        report["discrn"].update(details)
        report["timings"][f"discrn/{pair}"] = {"items": len(items), "seconds": time.perf_counter() - start}
        log.info("DisCRn %s: %s", pair, {k: round(v, 4) for k, v in values.items()})
    return metrics, report


def run_eval(cfg: XibConfig, runner: Any = None) -> dict[str, float]:
    """Evaluate the candidate, write metrics.json/candidate.json/report.json/plots, log to MLflow."""
    from xib.eval.publish import preflight

    out = Path(cfg.eval.output)
    preflight(out, cfg.eval.min_free_mb)  # a read-only or full disk is found before the work
    checkpoints = checkpoint_dirs(cfg)
    provenance = candidate_provenance(cfg, checkpoints)
    runner = runner if runner is not None else build_runner(cfg, checkpoints)
    start = time.perf_counter()
    metrics, report = evaluate(cfg, runner)
    report["timings"]["total_seconds"] = time.perf_counter() - start
    if not metrics:
        raise XibError("the evaluation produced no metrics (no tasks, modalities or pairs selected)")
    # Re-hash after the run: checkpoints replaced while evaluating would make these numbers lie.
    if candidate_provenance(cfg, checkpoints)["checkpoints"] != provenance["checkpoints"]:
        raise XibError("projection checkpoints changed during the evaluation; run `xib eval` again")
    write_outputs(cfg, out, metrics, report, provenance)
    plots = sorted((out / "plots").glob("*.png")) if cfg.eval.plots else []
    if cfg.eval.mlflow_run_id:
        log_to_mlflow(cfg, cfg.eval.mlflow_run_id, metrics, plots, out / "report.json")
    return metrics


def write_outputs(
    cfg: XibConfig, out: Path, metrics: dict[str, float], report: dict[str, Any], provenance: dict[str, Any]
) -> None:
    """plots/, report.json, candidate.json and metrics.json, published together (`xib.eval.publish`)."""
    from xib.eval.publish import staged_output

    with staged_output(out) as staging:
        if cfg.eval.plots:
            from xib.eval.plots import write_all

            (staging / "plots").mkdir()
            write_all(metrics, report["discrn"], list(cfg.eval.discrn.pairs), staging / "plots")
        write_json(staging / "report.json", report)
        write_json(staging / "candidate.json", {**provenance, "metrics": metrics})
        write_json(staging / "metrics.json", metrics)


def log_to_mlflow(
    cfg: XibConfig, run_id: str, metrics: dict[str, float], plots: list[Path], report: Path
) -> None:
    from xib.mlflow_store import tracking_client
    from xib.train.tracking import tracking_service

    with tracking_service(cfg):
        _log_to_mlflow(tracking_client(cfg.infra.mlflow_tracking_uri), run_id, metrics, plots, report)


def _log_to_mlflow(mc: Any, run_id: str, metrics: dict[str, float], plots: list[Path], report: Path) -> None:
    stamp = int(time.time() * 1000)
    from mlflow.entities import Metric

    mc.log_batch(run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in sorted(metrics.items())])
    for plot in plots:
        mc.log_artifact(run_id, str(plot), artifact_path="eval/plots")
    mc.log_artifact(run_id, str(report), artifact_path="eval")
