"""The MLflow model registry: candidates, the gate's verdict, promotion and rollback.

Every evaluated candidate becomes a version of the registered model `cfg.gate.model_name` holding
its projection checkpoints, its config, fingerprints and data hashes, with alias `challenger`.
Promotion moves `champion` to it and keeps the one before as `previous`; the whole move happens
under a lock file and as a compare-and-set on `champion` (the champion the gate judged against
must still be the champion), so racing promotions leave exactly one consistent champion.
Rollback moves `champion` back along the recorded champion history.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xib.errors import XibError
from xib.hashing import checkpoint_hashes, data_hashes, sha256_file  # noqa: F401 - provenance, used here and by callers
from xib.io import file_lock

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"
HISTORY_TAG = "xib.champion_history"  # registered-model tag: comma-separated champion versions
_UNSET: Any = object()


class PromotionConflict(XibError):
    """The champion moved since the gate judged the candidate against it."""


def client(cfg: Any) -> Any:
    """An MlflowClient on `cfg.infra`'s tracking (and registry) URI."""
    from xib.mlflow_store import tracking_client

    return tracking_client(str(cfg.infra.mlflow_tracking_uri))


def experiment_id(cfg: Any) -> str:
    """The experiment `cfg.infra.mlflow_experiment`, created with its artifact root if new."""
    from mlflow.exceptions import MlflowException

    mc = client(cfg)
    name = str(cfg.infra.mlflow_experiment)
    exp = mc.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    root = str(cfg.infra.mlflow_artifact_root)
    location = root if "://" in root else Path(root).resolve().as_uri()
    try:
        return str(mc.create_experiment(name, artifact_location=location))
    except MlflowException:  # created meanwhile by another process
        return str(mc.get_experiment_by_name(name).experiment_id)


# --- provenance ------------------------------------------------------------------------------


# --- registration ----------------------------------------------------------------------------


def register_candidate(
    cfg: Any,
    metrics: Mapping[str, float],
    artifacts: Mapping[str, str | os.PathLike[str]],
    *,
    run_id: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log `artifacts` as a pyfunc model, register it as a new version, alias it `challenger`.

    `artifacts` maps names to files or folders (see `xib.registry.pyfunc.candidate_artifacts`).
    Metrics are logged on the run (the gate reads the champion's metrics back from its run).
    Returns the new version number.
    """
    import mlflow

    from xib.registry.pyfunc import INPUT_EXAMPLE, MODEL_CODE, pip_requirements, signature

    mc = client(cfg)
    name = str(cfg.gate.model_name)
    exp_id = experiment_id(cfg)
    with mlflow.start_run(run_id=run_id or None, experiment_id=None if run_id else exp_id) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        if provenance:
            mlflow.log_dict(dict(provenance), "provenance.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={k: str(v) for k, v in artifacts.items()},
            pip_requirements=pip_requirements(),
            signature=signature(),
        )
        # not log_model(input_example=...): MLflow would load the whole model to validate it
        mlflow.log_dict({"records": INPUT_EXAMPLE}, "input_example.json")
        active_run_id = run.info.run_id
    with contextlib.suppress(Exception):  # exists already
        mc.create_registered_model(name, description="X-InstructBLIP projections over a frozen LLM")
    version = mc.create_model_version(
        name, source=info.model_uri, run_id=active_run_id, tags=dict(tags or {})
    )
    number = str(version.version)
    mc.set_registered_model_alias(name, CHALLENGER, number)
    for key, value in (provenance or {}).items():
        if isinstance(value, Mapping) and key in {"checkpoints", "fingerprints"}:
            for sub, val in value.items():
                mc.set_model_version_tag(name, number, f"{key}.{sub}", str(val)[:5000])
    return number


def alias_version(cfg: Any, alias: str) -> str | None:
    """The version an alias points at, or None when it is unset (or the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(cfg).get_model_version_by_alias(str(cfg.gate.model_name), alias).version)
    except MlflowException:
        return None


def version_metrics(cfg: Any, version: str) -> dict[str, float]:
    """The metrics logged on the run behind a model version."""
    mc = client(cfg)
    mv = mc.get_model_version(str(cfg.gate.model_name), str(version))
    if not mv.run_id:
        return {}
    return {k: float(v) for k, v in mc.get_run(mv.run_id).data.metrics.items()}


def record_decision(cfg: Any, version: str, decision: Any) -> None:
    """The gate's verdict and one reason per metric, as tags on the version."""
    mc = client(cfg)
    name = str(cfg.gate.model_name)
    mc.set_model_version_tag(name, version, "gate.decision", "promote" if decision.promote else "refuse")
    mc.set_model_version_tag(name, version, "gate.summary", decision.summary()[:5000])
    mc.set_model_version_tag(name, version, "gate.champion", decision.champion_version or "")
    for check in decision.checks:
        mc.set_model_version_tag(name, version, f"gate.{check.rule}.{check.metric}", check.reason[:5000])


# --- promotion -------------------------------------------------------------------------------


def promotion_lock(path: str | os.PathLike[str], timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """An exclusive flock on `path`, waited for at most `timeout_s` seconds."""
    return file_lock(path, timeout_s, busy="another promotion holds the registry lock")


def _history(mc: Any, name: str) -> list[str]:
    tags = mc.get_registered_model(name).tags or {}
    raw = tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _write_aliases(mc: Any, name: str, history: list[str]) -> None:
    """Point `previous` then `champion` at the last two entries of `history`, and record it."""
    mc.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    if len(history) >= 2:
        mc.set_registered_model_alias(name, PREVIOUS, history[-2])
    else:
        with contextlib.suppress(Exception):
            mc.delete_registered_model_alias(name, PREVIOUS)
    mc.set_registered_model_alias(name, CHAMPION, history[-1])


def promote(cfg: Any, version: str, expected_champion: str | None = _UNSET, note: str = "") -> str | None:
    """Make `version` the champion; the one before becomes `previous`. Returns the old champion.

    `expected_champion` is the champion the gate judged against (None: there was none). When
    given and the champion has moved since, nothing changes and PromotionConflict is raised.
    """
    mc = client(cfg)
    name = str(cfg.gate.model_name)
    version = str(version)
    mc.get_model_version(name, version)  # raises when the version does not exist
    with promotion_lock(str(cfg.gate.lock_file), float(cfg.gate.lock_timeout_s)):
        current = alias_version(cfg, CHAMPION)
        if expected_champion is not _UNSET and current != expected_champion:
            raise PromotionConflict(
                f"champion moved from {expected_champion or 'none'} to {current or 'none'} since version "
                f"{version} was judged; run `xib gate` again"
            )
        if current == version:
            return current
        history = _history(mc, name)
        if current is not None and (not history or history[-1] != current):
            history.append(current)  # a champion set outside xib: keep it in the history
        history.append(version)
        _write_aliases(mc, name, history)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        mc.set_model_version_tag(name, version, "promoted_at", stamp)
        if note:
            mc.set_model_version_tag(name, version, "promotion_note", note[:5000])
        return current


def rollback(cfg: Any) -> str:
    """Move `champion` back to the previous champion; returns the version now champion."""
    mc = client(cfg)
    name = str(cfg.gate.model_name)
    with promotion_lock(str(cfg.gate.lock_file), float(cfg.gate.lock_timeout_s)):
        history = _history(mc, name)
        current = alias_version(cfg, CHAMPION)
        if current is not None and (not history or history[-1] != current):
            history.append(current)
        if len(history) < 2:
            raise XibError(f"model {name!r} has no previous champion to roll back to")
        demoted = history.pop()
        _write_aliases(mc, name, history)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        mc.set_model_version_tag(name, demoted, "rolled_back_at", stamp)
        return history[-1]


def write_decision(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    from xib.io import write_json

    write_json(path, dict(payload))


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise XibError(f"{path}: no evaluation metrics (run `xib eval` first)")
    return json.loads(path.read_text())


# --- the gate stage ----------------------------------------------------------------------------------


def run_gate(cfg: Any) -> dict[str, Any]:
    """`xib gate`: register the evaluated candidate, judge it against the champion, record why.

    Reads `<eval.output>/metrics.json` and `candidate.json`; refuses to register when the projection
    checkpoints on disk are not the ones that were evaluated (a failed or stale evaluation registers
    nothing). Writes `artifacts/gate/decision.json`; promotes when `gate.auto_promote` and passing.
    """
    import tempfile

    from xib.registry.gate import decide_with_policy
    from xib.registry.pyfunc import candidate_artifacts, stage_projections
    from xib.runtime.checkpoints import checkpoint_dirs

    out = Path(str(cfg.eval.output))
    metrics = {k: float(v) for k, v in read_metrics(out / "metrics.json").items()}
    candidate_file = out / "candidate.json"
    if not candidate_file.is_file():
        raise XibError(f"{candidate_file}: missing (run `xib eval` first)")
    candidate = json.loads(candidate_file.read_text())
    if candidate.get("metrics") != metrics:
        raise XibError(
            f"{out / 'metrics.json'} and {candidate_file} come from different evaluations; run `xib eval`"
        )
    checkpoints = checkpoint_dirs(cfg)
    evaluated = candidate.get("checkpoints", {})
    current = checkpoint_hashes({m: checkpoints[m] for m in evaluated if m in checkpoints})
    if current != evaluated:
        changed = sorted(m for m in evaluated if current.get(m) != evaluated[m])
        raise XibError(
            f"projections {changed} changed since they were evaluated; run `xib eval` before `xib gate`"
        )

    champion = alias_version(cfg, CHAMPION)
    champion_metrics = version_metrics(cfg, champion) if champion else None
    provenance = {k: v for k, v in candidate.items() if k != "metrics"}
    with tempfile.TemporaryDirectory(prefix="xib-candidate-") as tmp:
        artifacts = candidate_artifacts(cfg, Path(tmp), provenance)
        artifacts = stage_projections(artifacts, Path(tmp))
        version = register_candidate(
            cfg, metrics, artifacts, run_id=str(cfg.eval.mlflow_run_id) or None, provenance=provenance
        )
    decision = decide_with_policy(metrics, champion_metrics, cfg.gate, champion, version)
    record_decision(cfg, version, decision)
    promoted = False
    if decision.promote and bool(cfg.gate.auto_promote):
        promote(cfg, version, expected_champion=champion, note=decision.summary())
        promoted = True
    payload = {
        "decision": "promote" if decision.promote else "refuse",
        "promoted": promoted,
        "model": str(cfg.gate.model_name),
        "version": version,
        "champion": champion,
        "summary": decision.summary(),
        "reasons": [c.reason for c in decision.checks] or [decision.summary()],
        "checks": decision.to_dict()["checks"],
    }
    write_decision(Path(str(cfg.paths.artifacts)) / "gate" / "decision.json", payload)
    return payload


def promote_version(cfg: Any, version: str | None = None, force: bool = False) -> tuple[str, str | None]:
    """`xib promote`: the challenger (or `version`) becomes champion if the gate passed it.

    Without `force`, the version's gate verdict must be `promote` and the champion must still be
    the one it was judged against. Returns (new champion, old champion).
    """
    mc = client(cfg)
    name = str(cfg.gate.model_name)
    version = version or alias_version(cfg, CHALLENGER)
    if version is None:
        raise XibError(f"model {name!r} has no challenger to promote (run `xib gate`)")
    tags = mc.get_model_version(name, str(version)).tags or {}
    if force:
        old = promote(cfg, str(version), note="forced by `xib promote --force`")
        return str(version), old
    verdict = tags.get("gate.decision")
    if verdict != "promote":
        reason = tags.get("gate.summary", "it was never judged (run `xib gate`)")
        raise XibError(f"version {version} did not pass the gate: {reason}")
    expected = tags.get("gate.champion") or None
    old = promote(cfg, str(version), expected_champion=expected, note=tags.get("gate.summary", ""))
    return str(version), old
