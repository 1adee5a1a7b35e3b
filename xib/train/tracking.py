"""MLflow tracking of alignment runs: the parent opens the run, rank 0 alone logs into it.

mlflow is imported inside the functions (it costs about a second). Params are the resolved config,
flattened; tags carry provenance (git commit, data hashes, LLM and encoder fingerprints). Values of
keys that name a secret are masked and URLs lose their user info before anything is logged
(`xib.scrub`, the one scrubber); tracking calls are bounded by `infra.retry` (`xib.transient`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.scrub import MASK, is_secret_key, scrub, scrub_value  # noqa: F401 - the one scrubber, re-exported

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

RUN_ID_ENV = "XIB_MLFLOW_RUN_ID"
# The launcher hashes the frozen LLM once; its workers read the hash here instead of each
# re-reading every weight file (gigabytes per rank for a 7B LLM).
LLM_FINGERPRINT_ENV = "XIB_LLM_FINGERPRINT"


def param_key(key: str) -> str:
    """MLflow accepts alphanumerics, `_ - . : /` and spaces in names; anything else becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key)


def hash_paths(paths: list[Path]) -> str:
    """sha256 over the files (sorted, by relative name and content) under the given paths."""
    from xib.hashing import sha256_file

    digest = hashlib.sha256()
    for root in paths:
        files = (
            sorted(p for p in root.rglob("*") if p.is_file())
            if root.is_dir()
            else [root]
            if root.is_file()
            else []
        )
        for f in files:
            digest.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def data_hashes(cfg: XibConfig, modality: str, repo: str | Path = ".") -> dict[str, str]:
    """DVC's recorded hashes of the data this run reads (dvc.lock), else hashes of the files themselves."""
    lock = Path(repo) / "dvc.lock"
    if lock.is_file():
        import yaml

        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        out = {}
        for name, stage in stages.items():
            for entry in stage.get("outs", []) or []:
                path = str(entry.get("path", ""))
                if modality in path or "world" in path or "instruct" in path:
                    out[f"dvc.{name}.{path}"] = str(entry.get("md5") or entry.get("hash") or "")
        if out:
            return out
    data = Path(cfg.paths.data)
    return {
        f"data.instruct.{modality}": hash_paths([data / "instruct" / modality]),
        f"data.manifest.{modality}": hash_paths(
            sorted((data / "world" / modality).glob("*/manifest.parquet"))
        ),
    }


def weights_fingerprint(path: str | Path) -> str:
    """sha256 over a save_pretrained directory's config and weight files."""
    path = Path(path)
    if not path.exists():
        return "missing"
    names = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt")
    files = (
        sorted({f for pattern in names for f in path.rglob(pattern) if f.is_file()})
        if path.is_dir()
        else [path]
    )
    return hash_paths(files)


def _mlflow(cfg: XibConfig) -> Any:
    from xib.mlflow_store import use_tracking_uri
    from xib.transient import apply_budgets

    apply_budgets(cfg.infra.retry)
    return use_tracking_uri(cfg.infra.mlflow_tracking_uri)


def tracking_service(cfg: XibConfig) -> Any:
    """A block of calls to the tracking server: a transient failure inside ends as one line."""
    from xib.transient import service, tracking_budget

    return service("MLflow tracking", cfg.infra.mlflow_tracking_uri, tracking_budget(cfg.infra.retry))


def open_run(cfg: XibConfig, modality: str, tags: dict[str, str] | None = None) -> str:
    """Parent process: create the run (params + provenance tags) and return its id for the workers."""
    with tracking_service(cfg):
        return _open_run(cfg, modality, tags)


def _open_run(cfg: XibConfig, modality: str, tags: dict[str, str] | None) -> str:
    from xib.config import to_flat_dict

    mlflow = _mlflow(cfg)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.infra.mlflow_experiment)
    if experiment is None:
        experiment_id = client.create_experiment(
            cfg.infra.mlflow_experiment, artifact_location=cfg.infra.mlflow_artifact_root or None
        )
    else:
        experiment_id = experiment.experiment_id
    all_tags = {"xib.stage": "align", "xib.modality": modality, **(tags or {})}
    run = client.create_run(experiment_id, run_name=f"align-{modality}", tags=scrub(all_tags))
    params = scrub(to_flat_dict(cfg))
    from mlflow.entities import Param

    items = [Param(param_key(k), str(v)[:6000]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def llm_fingerprint(cfg: XibConfig) -> str:
    """The frozen LLM's weights fingerprint: the launcher's, when it handed one down, else hashed here."""
    return os.environ.get(LLM_FINGERPRINT_ENV) or weights_fingerprint(cfg.model.llm.path)


def provenance_tags(cfg: XibConfig, modality: str, encoder_fingerprint: str, llm_fp: str) -> dict[str, str]:
    """The run's tags; `llm_fp` is the fingerprint the launcher already hashed for its workers."""
    from xib.models.checkpoint import REPO_ROOT, git_commit

    repo = REPO_ROOT
    tags = {
        "git.commit": git_commit(repo),
        "llm.fingerprint": llm_fp,
        "encoder.fingerprint": encoder_fingerprint,
    }
    tags.update(data_hashes(cfg, modality, repo))
    return tags


def close_run(cfg: XibConfig, run_id: str, status: str) -> None:
    with tracking_service(cfg):
        _mlflow(cfg).MlflowClient().set_terminated(run_id, status=status)


class RankZeroLogger:
    """Logs to the parent's run from rank 0 only; every other rank (or no run id) is a no-op."""

    def __init__(self, cfg: XibConfig, rank: int, run_id: str | None = None) -> None:
        self.run_id = run_id if run_id is not None else os.environ.get(RUN_ID_ENV, "")
        self.enabled = rank == 0 and bool(self.run_id)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.client = _mlflow(cfg).MlflowClient() if self.enabled else None

    def metrics(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.history.setdefault(key, []).append((step, float(value)))
        if self.client is not None:
            import time

            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in values.items()]
            self.client.log_batch(self.run_id, metrics=batch)

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.client is not None:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def text(self, text: str, name: str) -> None:
        if self.client is not None:
            self.client.log_text(self.run_id, scrub_value(text), name)

    def tags(self, tags: dict[str, str]) -> None:
        if self.client is not None:
            for k, v in scrub(tags).items():
                self.client.set_tag(self.run_id, k, str(v))


def plot_curves(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str) -> Path | None:
    """Training/validation loss and LR against the step, as a PNG (matplotlib, Agg)."""
    keys = [k for k in ("train/loss", "val/loss") if history.get(k)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xib.io import atomic_path

    fig, axes = plt.subplots(1, 2 if history.get("train/lr") else 1, figsize=(10, 4), squeeze=False)
    for key in keys:
        steps, values = zip(*history[key])
        axes[0][0].plot(steps, values, label=key, marker="o" if key == "val/loss" else None)
    axes[0][0].set_xlabel("step")
    axes[0][0].set_ylabel("loss")
    axes[0][0].set_title(title)
    axes[0][0].legend()
    if history.get("train/lr"):
        steps, values = zip(*history["train/lr"])
        axes[0][1].plot(steps, values)
        axes[0][1].set_xlabel("step")
        axes[0][1].set_ylabel("learning rate")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
