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
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.hashing import checkpoint_hashes, data_hashes, sha256_file  # noqa: F401 - provenance, used here and by callers
from xib.io import file_lock

if TYPE_CHECKING:
    from xib.config import XibConfig

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"
HISTORY_TAG = "xib.champion_history"  # registered-model tag: comma-separated champion versions
INTENT_TAG = "xib.champion_intent"  # registered-model tag: a promotion or rollback not yet finished
NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}  # MLflow's "no such alias / model"
GATE_REFUSED = 3  # `xib gate`'s exit status when it refuses the candidate (1: an error, 75: transient)
_UNSET: Any = object()


class PromotionConflict(XibError):
    """The champion moved since the gate judged the candidate against it."""


def client(cfg: XibConfig) -> Any:
    """An MlflowClient on `cfg.infra`'s tracking (and registry) URI."""
    from xib.mlflow_store import tracking_client
    from xib.transient import apply_budgets

    apply_budgets(cfg.infra.retry)
    return tracking_client(cfg.infra.mlflow_tracking_uri)


def registry_service(cfg: XibConfig) -> contextlib.AbstractContextManager[None]:
    """A block of registry calls: a transient failure inside ends as one line naming the server."""
    from xib.transient import service, tracking_budget

    return service("MLflow registry", cfg.infra.mlflow_tracking_uri, tracking_budget(cfg.infra.retry))


def experiment_id(cfg: XibConfig) -> str:
    """The experiment `cfg.infra.mlflow_experiment`, created with its artifact root if new."""
    from mlflow.exceptions import MlflowException

    mc = client(cfg)
    name = cfg.infra.mlflow_experiment
    exp = mc.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    root = cfg.infra.mlflow_artifact_root
    location = root if "://" in root else Path(root).resolve().as_uri()
    try:
        return str(mc.create_experiment(name, artifact_location=location))
    except MlflowException:  # created meanwhile by another process
        return str(mc.get_experiment_by_name(name).experiment_id)


# --- provenance ------------------------------------------------------------------------------


# --- registration ----------------------------------------------------------------------------


def register_candidate(
    cfg: XibConfig,
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
    from mlflow.exceptions import MlflowException

    from xib.registry.pyfunc import INPUT_EXAMPLE, MODEL_CODE, pip_requirements, signature

    mc = client(cfg)
    name = cfg.gate.model_name
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
    try:
        mc.create_registered_model(name, description="X-InstructBLIP projections over a frozen LLM")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = mc.create_model_version(  # a tracking server checks that model_id holds the source
        name, source=info.model_uri, run_id=active_run_id, tags=dict(tags or {}), model_id=info.model_id
    )
    number = str(version.version)
    mc.set_registered_model_alias(name, CHALLENGER, number)
    for key, value in (provenance or {}).items():
        if isinstance(value, Mapping) and key in {"checkpoints", "fingerprints"}:
            for sub, val in value.items():
                mc.set_model_version_tag(name, number, f"{key}.{sub}", str(val)[:5000])
    return number


def alias_version(cfg: XibConfig, alias: str) -> str | None:
    """The version an alias points at, or None when it is unset (or the model is not registered).

    A registry that cannot be reached raises TransientError: it is never read as "no champion".
    """
    with registry_service(cfg):
        return _alias(client(cfg), cfg.gate.model_name, alias)


def version_metrics(cfg: XibConfig, version: str) -> dict[str, float]:
    """The metrics logged on the run behind a model version."""
    mc = client(cfg)
    mv = mc.get_model_version(cfg.gate.model_name, str(version))
    if not mv.run_id:
        return {}
    return {k: float(v) for k, v in mc.get_run(mv.run_id).data.metrics.items()}


def record_decision(cfg: XibConfig, version: str, decision: Any) -> None:
    """The gate's verdict and one reason per metric, as tags on the version."""
    mc = client(cfg)
    name = cfg.gate.model_name
    mc.set_model_version_tag(name, version, "gate.decision", "promote" if decision.promote else "refuse")
    mc.set_model_version_tag(name, version, "gate.summary", decision.summary()[:5000])
    mc.set_model_version_tag(name, version, "gate.champion", decision.champion_version or "")
    for check in decision.checks:
        mc.set_model_version_tag(name, version, f"gate.{check.rule}.{check.metric}", check.reason[:5000])


# --- promotion -------------------------------------------------------------------------------
#
# Promotion and rollback write several things: the champion alias, the champion history (a tag on
# the registered model), the `previous` alias and a time stamp. They cannot be written in one
# transaction through MLflow's API, so the move is ordered around one commit point:
#   1. an intent tag (the operation, the champion it starts from and the one it ends at, the new history);
#   2. the `champion` alias moves: the commit point;
#   3. the history tag, the `previous` alias and the version's time stamp follow;
#   4. the intent tag is removed.
# A crash before 2 leaves the champion as it was (the intent is dropped on the next call); after 2,
# the next call finishes 3 and 4. Readers (`champion_state`) resolve a pending intent the same way,
# so they see the registry as before or as after, never in between. The whole move runs under the
# registry lock, taken in the registry's own store when that is PostgreSQL (an advisory lock: it
# holds across hosts and is released if the holder dies), else a lock file (one host, SQLite).


def promotion_lock(path: str | os.PathLike[str], timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """An exclusive flock on `path`, waited for at most `timeout_s` seconds."""
    return file_lock(path, timeout_s, busy="another promotion holds the registry lock")


def lock_uri(cfg: XibConfig) -> str:
    """Where the promotion lock lives: `gate.lock_uri`, else the tracking store itself when it is
    PostgreSQL, else "" (the lock file `gate.lock_file`)."""
    explicit = cfg.gate.lock_uri
    if explicit:
        return explicit
    tracking = cfg.infra.mlflow_tracking_uri
    return tracking if tracking.startswith(("postgresql", "postgres")) else ""


def _lock_key(name: str) -> int:
    """A 64-bit advisory-lock key per registered model."""
    return int.from_bytes(hashlib.sha256(f"xib.promotion:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(uri: str, name: str, timeout_s: float) -> Iterator[None]:
    """PostgreSQL's session advisory lock for model `name` in the database at `uri`.

    Every host that promotes takes it in the same database, so two promoters on two hosts
    serialise; a promoter that dies loses its session and with it the lock.
    """
    import psycopg2

    from xib.mlflow_store import credentials_to_env
    from xib.transient import service

    dsn = credentials_to_env(re.sub(r"^postgres(ql)?\+[a-z0-9_]+://", "postgresql://", uri))
    with service("registry lock (PostgreSQL)", uri, f"one connection, {timeout_s:g} s timeout"):
        conn = psycopg2.connect(dsn, connect_timeout=max(1, int(timeout_s)))
    try:
        conn.autocommit = True
        key, deadline = _lock_key(name), time.monotonic() + timeout_s
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise XibError(
                        f"another promotion of {name!r} holds the registry lock (waited {timeout_s:.0f} s)"
                    )
                time.sleep(0.05)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()


def registry_lock(cfg: XibConfig) -> contextlib.AbstractContextManager[None]:
    """The lock every promotion and rollback of `gate.model_name` holds (see `lock_uri`)."""
    timeout = cfg.gate.lock_timeout_s
    uri = lock_uri(cfg)
    if uri:
        return advisory_lock(uri, cfg.gate.model_name, timeout)
    return promotion_lock(cfg.gate.lock_file, timeout)


def _history(tags: Mapping[str, str]) -> list[str]:
    return [v for v in str(tags.get(HISTORY_TAG, "")).split(",") if v]


def _alias(mc: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    from xib.transient import is_transient

    try:
        return str(mc.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if is_transient(err) or err.error_code not in NOT_FOUND:
            raise  # an unreachable registry is never "no such alias"
        return None


def _registered_tags(mc: Any, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    from xib.transient import is_transient

    try:
        return dict(mc.get_registered_model(name).tags or {})
    except MlflowException as err:
        if is_transient(err) or err.error_code not in NOT_FOUND:
            raise
        return {}


def _state(mc: Any, name: str) -> tuple[str | None, list[str], dict[str, Any] | None]:
    """(champion, committed history, pending intent): the registry as the last committed move left it."""
    tags = _registered_tags(mc, name)
    champion = _alias(mc, name, CHAMPION)
    intent = json.loads(tags[INTENT_TAG]) if tags.get(INTENT_TAG) else None
    history = _history(tags)
    if intent is not None and champion == intent["to"]:
        history = list(intent["history"])  # committed: the history tag may lag behind
    if champion is not None and (not history or history[-1] != champion):
        history.append(champion)  # a champion set outside xib: keep it in the history
    return champion, history, intent


def champion_state(cfg: XibConfig) -> dict[str, Any]:
    """`{"champion", "previous", "history"}` as the last committed promotion or rollback left them."""
    with registry_service(cfg):
        champion, history, _ = _state(client(cfg), cfg.gate.model_name)
    previous = history[-2] if len(history) >= 2 else None
    return {"champion": champion, "previous": previous, "history": history}


def _delete_alias(mc: Any, name: str, alias: str) -> None:
    """Remove an alias; one that is already gone is fine, any other failure is not."""
    from mlflow.exceptions import MlflowException

    from xib.transient import is_transient

    try:
        mc.delete_registered_model_alias(name, alias)
    except MlflowException as err:
        if is_transient(err) or err.error_code not in NOT_FOUND:
            raise


def _finish(mc: Any, name: str, intent: dict[str, Any]) -> None:
    """Steps 3 and 4 of a committed move (idempotent: a crash here is finished by the next call)."""
    history = list(intent["history"])
    mc.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    if len(history) >= 2:
        mc.set_registered_model_alias(name, PREVIOUS, history[-2])
    else:
        _delete_alias(mc, name, PREVIOUS)
    stamp_tag = "promoted_at" if intent["op"] == "promote" else "rolled_back_at"
    stamped = intent["to"] if intent["op"] == "promote" else intent["from"]
    mc.set_model_version_tag(name, stamped, stamp_tag, intent["stamp"])
    if intent.get("note"):
        mc.set_model_version_tag(name, stamped, "promotion_note", str(intent["note"])[:5000])
    mc.delete_registered_model_tag(name, INTENT_TAG)


def _recover(mc: Any, name: str) -> tuple[str | None, list[str]]:
    """Finish or drop a move a crash interrupted; returns (champion, history) as committed."""
    champion, history, intent = _state(mc, name)
    if intent is not None:
        if champion == intent["to"]:
            _finish(mc, name, intent)
        else:
            mc.delete_registered_model_tag(name, INTENT_TAG)  # never committed: as before
    return champion, history


def repair(cfg: XibConfig) -> dict[str, Any]:
    """Finish or drop a promotion/rollback a crash interrupted (every promote and rollback does this
    first); returns `champion_state`, which this never changes."""
    mc = client(cfg)
    with registry_service(cfg), registry_lock(cfg):
        _recover(mc, cfg.gate.model_name)
    return champion_state(cfg)


def _move(
    mc: Any, name: str, op: str, current: str | None, target: str, history: list[str], note: str
) -> None:
    intent = {
        "op": op,
        "from": current,
        "to": target,
        "history": history,
        "stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": note[:2000],
    }
    mc.set_registered_model_tag(name, INTENT_TAG, json.dumps(intent))
    mc.set_registered_model_alias(name, CHAMPION, target)  # the commit point
    _finish(mc, name, intent)


def _check_expected(expected: Any, current: str | None, what: str) -> None:
    if expected is not _UNSET and (str(expected) if expected is not None else None) != current:
        raise PromotionConflict(
            f"champion moved from {expected or 'none'} to {current or 'none'} since {what}; "
            "look at `xib gate` / the registry again"
        )


def promote(
    cfg: XibConfig, version: str, expected_champion: str | None = _UNSET, note: str = ""
) -> str | None:
    """Make `version` the champion; the one before becomes `previous`. Returns the old champion.

    `expected_champion` is the champion the gate judged against (None: there was none). When
    given and the champion has moved since, nothing changes and PromotionConflict is raised.
    """
    mc = client(cfg)
    name = cfg.gate.model_name
    version = str(version)
    with registry_service(cfg), registry_lock(cfg):
        mc.get_model_version(name, version)  # raises when the version does not exist
        current, history = _recover(mc, name)
        _check_expected(expected_champion, current, f"version {version} was judged")
        if current == version:
            return current
        _move(mc, name, "promote", current, version, [*history, version], note)
        return current


def rollback(cfg: XibConfig, expected_champion: str | None = _UNSET) -> str:
    """Move `champion` back to the previous champion; returns the version now champion.

    `expected_champion` (when given) must still be the champion, else PromotionConflict.
    """
    mc = client(cfg)
    name = cfg.gate.model_name
    with registry_service(cfg), registry_lock(cfg):
        current, history = _recover(mc, name)
        _check_expected(expected_champion, current, "the rollback was asked for")
        if current is None or len(history) < 2:
            raise XibError(f"model {name!r} has no previous champion to roll back to")
        _move(mc, name, "rollback", current, history[-2], history[:-1], "")
        return history[-2]


def write_decision(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    from xib.io import write_json

    write_json(path, dict(payload))


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise XibError(f"{path}: no evaluation metrics (run `xib eval` first)")
    return json.loads(path.read_text())


# --- the gate stage ----------------------------------------------------------------------------------


def run_gate(cfg: XibConfig) -> dict[str, Any]:
    """`xib gate`: register the evaluated candidate, judge it against the champion, record why.

    Reads `<eval.output>/metrics.json` and `candidate.json`; refuses to register when the projection
    checkpoints on disk are not the ones that were evaluated (a failed or stale evaluation registers
    nothing). Writes `artifacts/gate/decision.json`; promotes when `gate.auto_promote` and passing.
    """
    import tempfile

    from xib.registry.gate import decide_with_policy
    from xib.registry.pyfunc import candidate_artifacts, stage_projections
    from xib.runtime.checkpoints import checkpoint_dirs

    out = Path(cfg.eval.output)
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

    provenance = {k: v for k, v in candidate.items() if k != "metrics"}
    with registry_service(cfg):
        champion = alias_version(cfg, CHAMPION)  # unreachable: TransientError, never "no champion"
        champion_metrics = version_metrics(cfg, champion) if champion else None
        with tempfile.TemporaryDirectory(prefix="xib-candidate-") as tmp:
            artifacts = candidate_artifacts(cfg, Path(tmp), provenance)
            artifacts = stage_projections(artifacts, Path(tmp))
            version = register_candidate(
                cfg, metrics, artifacts, run_id=cfg.eval.mlflow_run_id or None, provenance=provenance
            )
        decision = decide_with_policy(metrics, champion_metrics, cfg.gate, champion, version)
        record_decision(cfg, version, decision)
        promoted = False
        if decision.promote and cfg.gate.auto_promote:
            promote(cfg, version, expected_champion=champion, note=decision.summary())
            promoted = True
    failed = [c.reason for c in decision.checks if not c.passed]
    passed = [c.reason for c in decision.checks if c.passed]
    payload = {
        "decision": "promote" if decision.promote else "refuse",
        "promoted": promoted,
        "model": cfg.gate.model_name,
        "version": version,
        "champion": champion,
        "summary": decision.summary(),
        "reasons": failed + passed or [decision.summary()],  # failing checks first
        "checks": decision.to_dict()["checks"],
    }
    write_decision(Path(cfg.paths.artifacts) / "gate" / "decision.json", payload)
    return payload


def promote_version(
    cfg: XibConfig, version: str | None = None, force: bool = False
) -> tuple[str, str | None]:
    """`xib promote`: the challenger (or `version`) becomes champion if the gate passed it.

    Without `force`, the version's gate verdict must be `promote` and the champion must still be
    the one it was judged against. Returns (new champion, old champion).
    """
    mc = client(cfg)
    name = cfg.gate.model_name
    version = version or alias_version(cfg, CHALLENGER)
    if version is None:
        raise XibError(f"model {name!r} has no challenger to promote (run `xib gate`)")
    with registry_service(cfg):
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
