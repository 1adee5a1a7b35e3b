"""Data versioning with DVC: track the data sets, push them to a remote, pull them back.

The data sets are `<data>/world`, `<data>/instruct` and `<data>/discrn`. Where the project's
`dvc.yaml` names a data set as a stage output (the pipeline makes it), tracking commits that
stage (`dvc commit`, hashes land in dvc.lock); otherwise `dvc add` writes a `<name>.dvc` file.

The remote comes from the config: `infra.dvc_remote` (its name) and `infra.dvc_remote_url` (a local
folder by default; `s3://bucket/prefix` for S3, with `infra.s3_endpoint_url` for MinIO, moto or any
S3-compatible store). Remote settings are written to `.dvc/config.local`, since they are per
machine; credentials come from the environment or AWS profiles and are never written anywhere.
DVC runs in-process through its Python API (`dvc.repo.Repo`, what the CLI calls; no analytics).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

DATASETS = ("world", "instruct", "discrn")


class DvcError(XibError):
    """A DVC operation failed; the message holds the operation and DVC's own reason."""


@contextlib.contextmanager
def _dvc_repo(root: Path, action: str) -> Iterator[Any]:
    """DVC's Python API on the project at `root` (the same code the `dvc` CLI runs, in-process).

    Paths handed to DVC are absolute, so nothing depends on the working directory.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            yield repo
    except (DvcException, OSError) as err:  # a missing bucket or folder surfaces as an OSError
        raise DvcError(f"dvc {action} failed in {root}: {type(err).__name__}: {err}") from None


def project_root(cfg: XibConfig) -> Path:
    return Path(cfg.paths.root).resolve()


def dataset_paths(cfg: XibConfig, datasets: list[str] | tuple[str, ...] | None = None) -> dict[str, Path]:
    """name -> absolute folder of each data set (whether or not it exists yet)."""
    names = list(datasets or DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise XibError(f"unknown data set(s) {unknown}; expected some of {list(DATASETS)}")
    data = Path(cfg.paths.data).resolve()
    return {name: data / name for name in names}


def ensure_repo(cfg: XibConfig) -> Path:
    """`dvc init` the project root if needed (with git when the root is a git repository)."""
    from dvc.config import Config

    root = project_root(cfg)
    if not (root / ".dvc").is_dir():
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        try:
            Repo.init(str(root), no_scm=not (root / ".git").exists()).close()
        except DvcException as err:
            raise DvcError(f"dvc init failed in {root}: {err}") from None
    config = Config(dvc_dir=str(root / ".dvc"))
    if "site_cache_dir" not in config["core"]:
        # DVC's site cache defaults to /var/tmp/dvc; keep it inside the project's cache folder
        with config.edit("local") as conf:
            conf["core"]["site_cache_dir"] = str(root / ".cache" / "dvc-site")
    return root


def remote_url(cfg: XibConfig) -> str:
    """The configured remote as DVC wants it: URLs as they are, local folders absolute."""
    url = cfg.infra.dvc_remote_url
    if "://" in url:
        return url
    # relative paths in DVC config are relative to .dvc/, not to where the user stood
    return str(Path(url).expanduser().resolve())


def configure_remote(cfg: XibConfig) -> str:
    """Make the configured remote DVC's default, in `.dvc/config.local`; returns its name.

    Written through DVC's own config API (what `dvc remote add --local -d -f` does). The remote's
    section is replaced whole, so no stale endpoint lingers.
    """
    from dvc.config import Config

    root = ensure_repo(cfg)
    name, url = cfg.infra.dvc_remote, remote_url(cfg)
    if not name:
        raise XibError("infra.dvc_remote is empty: name the DVC remote")
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    section: dict[str, str] = {"url": url}
    endpoint = str(cfg.infra.s3_endpoint_url or "")
    if url.startswith("s3://"):
        if endpoint:
            section["endpointurl"] = endpoint
        # DVC's S3 remote takes whole seconds; without them a stalled transfer hangs `dvc push`
        retry = cfg.infra.retry
        section["connect_timeout"] = str(math.ceil(retry.storage_connect_timeout_s))
        section["read_timeout"] = str(math.ceil(retry.storage_read_timeout_s))
    with Config(dvc_dir=str(root / ".dvc")).edit("local") as conf:
        conf["remote"][name] = section
        conf["core"]["remote"] = name
    return name


def _pipeline_outputs(root: Path) -> dict[str, str]:
    """Output path (relative to root) -> stage name, for the plain stages of `dvc.yaml`."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return {}
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}) or {}
    outputs: dict[str, str] = {}
    for name, stage in stages.items():
        if not isinstance(stage, dict) or "foreach" in stage or "matrix" in stage:
            continue
        for out in stage.get("outs", []) or []:
            path = next(iter(out)) if isinstance(out, dict) else str(out)
            outputs[os.path.normpath(path)] = name
    return outputs


def track(cfg: XibConfig, datasets: list[str] | tuple[str, ...] | None = None) -> dict[str, str]:
    """Record the current content of the data sets in DVC's cache; returns name -> DVC md5.

    Data sets that do not exist (yet) are skipped; asking for one by name that is missing is an error.
    """
    root = project_root(cfg)
    paths = dataset_paths(cfg, datasets)
    present = {name: path for name, path in paths.items() if path.is_dir()}
    missing = [name for name in paths if name not in present]
    if datasets and missing:
        raise XibError(
            f"data set(s) {missing} not found under {Path(cfg.paths.data).resolve()}: make them first"
        )
    if not present:
        raise XibError(f"no data set under {Path(cfg.paths.data).resolve()} to track (run `xib world` first)")
    ensure_repo(cfg)
    outputs = _pipeline_outputs(root)
    relative = {name: os.path.normpath(os.path.relpath(path, root)) for name, path in present.items()}
    stages = sorted({outputs[rel] for rel in relative.values() if rel in outputs})
    added = [rel for rel in relative.values() if rel not in outputs]
    with _dvc_repo(root, "add/commit") as repo:
        for stage in stages:
            repo.commit(f"{root / 'dvc.yaml'}:{stage}", force=True)
        if added:
            repo.add([str(root / rel) for rel in added])
    return {name: _recorded_md5(root, rel, outputs.get(rel)) for name, rel in relative.items()}


def _recorded_md5(root: Path, rel: str, stage: str | None) -> str:
    if stage is None:
        record = yaml.safe_load((root / f"{rel}.dvc").read_text())
        return str(record["outs"][0]["md5"])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for out in lock["stages"][stage]["outs"]:
        if os.path.normpath(out["path"]) == rel:
            return str(out["md5"])
    raise DvcError(f"dvc.lock has no output {rel} for stage {stage}")


def recorded_hashes(cfg: XibConfig) -> dict[str, str]:
    """name -> DVC md5 as recorded in `.dvc` files / `dvc.lock`, for the data sets DVC tracks."""
    root = project_root(cfg)
    outputs = _pipeline_outputs(root)
    hashes = {}
    for name, path in dataset_paths(cfg).items():
        rel = os.path.normpath(os.path.relpath(path, root))
        if (rel in outputs and (root / "dvc.lock").is_file()) or (root / f"{rel}.dvc").is_file():
            try:
                hashes[name] = _recorded_md5(root, rel, outputs.get(rel))
            except (KeyError, DvcError):
                continue
    return hashes


def _targets(cfg: XibConfig, datasets: list[str] | tuple[str, ...] | None) -> list[str] | None:
    """DVC targets for the data sets: their `.dvc` files or the stages that make them (None: all)."""
    if not datasets:
        return None  # everything DVC tracks in the project
    root = project_root(cfg)
    outputs = _pipeline_outputs(root)
    targets = []
    for path in dataset_paths(cfg, datasets).values():
        rel = os.path.normpath(os.path.relpath(path, root))
        targets.append(f"{root / 'dvc.yaml'}:{outputs[rel]}" if rel in outputs else f"{root / rel}.dvc")
    return targets


def push(cfg: XibConfig, datasets: list[str] | tuple[str, ...] | None = None) -> int:
    """Upload the tracked data sets to the configured remote; returns how many files were uploaded."""
    name = configure_remote(cfg)
    with _dvc_repo(project_root(cfg), "push") as repo:
        return int(repo.push(targets=_targets(cfg, datasets), remote=name))


def pull(cfg: XibConfig, datasets: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Download the tracked data sets from the configured remote into the workspace.

    Returns DVC's statistics (files fetched, added, modified).
    """
    name = configure_remote(cfg)
    with _dvc_repo(project_root(cfg), "pull") as repo:
        return dict(repo.pull(targets=_targets(cfg, datasets), remote=name))
