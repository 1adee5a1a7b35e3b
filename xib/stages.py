"""The pipeline's stages as dvc.yaml declares them, for drivers other than `dvc repro`.

dvc.yaml is the single declaration of each stage's command, dependencies, parameters and outputs.
The Prefect flows read it here, run the same `xib` command (as a child process), and skip a stage whose
dependencies, parameters and command are unchanged since its outputs were written (the key DVC
itself would compare), so a nightly run with no new data costs little.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xib.config import CONF_DIR, XibConfig, select, to_plain
from xib.errors import EX_TEMPFAIL, TransientError, XibError
from xib.hashing import update_with_file

REPO = CONF_DIR.parent
DVC_FILE = REPO / "dvc.yaml"


@dataclass(frozen=True)
class Stage:
    name: str
    command: str  # the xib command name, e.g. "features"
    args: tuple[str, ...]  # its overrides, e.g. ("modality=image",)
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]


def _paths(entries: list[Any]) -> tuple[str, ...]:
    """dvc.yaml lists outputs as plain paths or {path: options}."""
    out: list[str] = []
    for entry in entries or []:
        out.extend(entry.keys() if isinstance(entry, dict) else [entry])
    return tuple(out)


def _stage(name: str, body: dict[str, Any]) -> Stage:
    words = shlex.split(body["cmd"])
    if words[:1] != ["xib"]:
        raise ValueError(f"dvc.yaml stage {name}: command must start with `xib`: {body['cmd']}")
    words = words[1:]
    if words[:1] == ["--params"]:
        words = words[2:]
    outs = _paths(body.get("outs", [])) + _paths(body.get("metrics", [])) + _paths(body.get("plots", []))
    return Stage(
        name, words[0], tuple(words[1:]), _paths(body.get("deps", [])), tuple(body.get("params", [])), outs
    )


def load_stages(dvc_file: Path = DVC_FILE) -> dict[str, Stage]:
    """Every concrete stage of dvc.yaml, `foreach` expanded (`features@image`, ...), in file order."""
    spec = yaml.safe_load(Path(dvc_file).read_text())["stages"]
    stages: dict[str, Stage] = {}
    for name, body in spec.items():
        if "foreach" in body:
            for item in body["foreach"]:
                text = json.dumps(body["do"]).replace("${item}", str(item))
                stages[f"{name}@{item}"] = _stage(f"{name}@{item}", json.loads(text))
        else:
            stages[name] = _stage(name, body)
    return stages


def _hash_path(digest: Any, path: Path) -> None:
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            update_with_file(digest, child)
    elif path.is_file():
        update_with_file(digest, path)
    else:
        digest.update(b"<missing>")


def _resolve(path: str, root: Path) -> Path:
    """Data and artifacts live under the project root (XIB_ROOT); source files in the repository."""
    if os.path.isabs(path):
        return Path(path)
    under_root = root / path
    return under_root if under_root.exists() or path.split("/")[0] in {"data", "artifacts"} else REPO / path


def stage_key(stage: Stage, cfg: XibConfig, root: Path) -> str:
    """A hash of the stage's command, dependency contents and parameter values."""
    digest = hashlib.sha256()
    digest.update(json.dumps([stage.command, stage.args]).encode())
    for dep in stage.deps:
        digest.update(dep.encode())
        _hash_path(digest, _resolve(dep, root))
    for key in stage.params:
        value = to_plain(select(cfg, key))
        digest.update(json.dumps([key, value], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _record_path(root: Path, stage: Stage) -> Path:
    return root / ".cache" / "stages" / f"{stage.name}.json"


def is_fresh(stage: Stage, key: str, root: Path) -> bool:
    """True when the stage last completed with this key and its outputs are still there."""
    record = _record_path(root, stage)
    if not record.exists():
        return False
    if json.loads(record.read_text()).get("key") != key:
        return False
    return all((root / out).exists() for out in stage.outs)


def mark_done(stage: Stage, key: str, root: Path) -> None:
    from xib.io import write_json

    write_json(_record_path(root, stage), {"key": key, "stage": stage.name})


class StageFailed(XibError):
    """A child stage exited non-zero for a reason a retry will not cure (its one-line cause inside)."""

    def __init__(self, stage: str, status: int, cause: str) -> None:
        self.stage, self.status = stage, status
        super().__init__(f"stage {stage} failed with exit status {status}" + (f": {cause}" if cause else ""))
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect may pickle a failed task's exception
        return (StageFailed, (self.stage, self.status, self.cause))


def _run_child(stage: Stage, args: list[str], root: Path, nice: int = 0) -> tuple[int, str]:
    """Run `xib <command>` as a child; returns its exit status and the one line it gave as its cause.

    `nice` > 0 lowers the child's CPU priority (its own children, the training ranks, inherit it), so
    stages that no other stage waits on fill the cores the critical path leaves idle.
    """
    import subprocess
    import sys
    import tempfile

    from xib.transient import FAILURE_FILE_ENV

    with tempfile.TemporaryDirectory(prefix="xib-stage-") as tmp:
        failure = Path(tmp) / "cause.txt"
        env = dict(os.environ, XIB_ROOT=str(root), **{FAILURE_FILE_ENV: str(failure)})
        command = [sys.executable, "-m", "xib.cli", stage.command, *args]
        status = subprocess.run(["nice", "-n", str(nice), *command] if nice else command, env=env).returncode
        cause = failure.read_text().strip() if failure.is_file() else ""
    return status, cause


def stage_niceness(cfg: XibConfig, stage: Stage) -> int:
    """The niceness `infra.stage_nice` gives `stage`; every name it lists must be a dvc.yaml stage."""
    from xib.config import ConfigError

    if cfg.infra.stage_nice:
        stages = load_stages()
        for name, value in cfg.infra.stage_nice.items():
            if name not in stages:
                raise ConfigError(
                    f"infra.stage_nice.{name}={value!r}: names no stage of dvc.yaml; one of "
                    + ", ".join(stages)
                )
    return int(cfg.infra.stage_nice.get(stage.name, 0))


def run_stage(
    stage: Stage, overrides: list[str], root: Path, force: bool = False, in_process: bool = True
) -> str:
    """Run one stage unless it is fresh. Returns "ran" or "skipped".

    `in_process=False` runs it as a child `xib` process: what the flows do, since their tasks run in
    threads and loading models (transformers' meta-device initialisation) is not thread-safe.
    """
    from xib.commands import load_commands
    from xib.config import load_config

    args = list(stage.args) + list(overrides)
    cfg = load_config(args)
    key = stage_key(stage, cfg, root)
    if not force and is_fresh(stage, key, root):
        return "skipped"
    if in_process:
        status = load_commands()[stage.command](args)
    else:
        status, cause = _run_child(stage, args, root, stage_niceness(cfg, stage))
        if status == EX_TEMPFAIL:
            raise TransientError(f"stage {stage.name}: {cause}")
        if status:
            raise StageFailed(stage.name, status, cause)
    if status:
        raise StageFailed(stage.name, status, "")
    # the key covers the dependencies as they were when the stage read them
    mark_done(stage, key, root)
    return "ran"
