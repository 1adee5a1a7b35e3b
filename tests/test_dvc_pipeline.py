"""The pipeline under DVC: params.yaml is conf/ composed, `dvc repro` runs and skips the data stages,
`dvc exp run -S` recomposes params.yaml through DVC's Hydra integration and reruns only what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from xib.pipeline.params import PARAMS_FILE, compose_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Tiny data: every stage of the data path in seconds.
TINY = [
    "data.world.items_per_modality=32",
    "data.world.entities_per_kind=4",
    "data.world.points=512",
    "data.validate.points=512",
    "data.corpus.fact_lines=50",
    "data.corpus.caption_lines=50",
    "data.corpus.instruction_lines=50",
    "data.corpus.comparison_lines=100",
    "data.discrn.examples_per_pair=8",
    "data.discrn.candidate_sample=8",
]


def _resolved(text: str) -> dict:
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


def _differences(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b), key=str)
            for d in _differences(a.get(key), b.get(key), f"{path}.{key}")
        ]
    return [] if a == b else [f"{path.lstrip('.')}: {a!r} != {b!r}"]


def test_params_yaml_is_conf_composed(monkeypatch):
    monkeypatch.delenv("XIB_ROOT", raising=False)
    assert PARAMS_FILE.is_file(), "params.yaml is missing: run `xib params`"
    drift = _differences(_resolved(PARAMS_FILE.read_text()), _resolved(compose_params()))
    assert not drift, "params.yaml has drifted from conf/ (run `xib params`): " + "; ".join(drift[:10])


def test_dvc_hydra_composition_is_what_xib_params_writes(tmp_path, monkeypatch):
    """`dvc exp run -S` rewrites params.yaml with DVC's own Hydra composition: it must match ours,
    or the first experiment would change every stage's parameters."""
    from dvc.config import Config
    from dvc.utils.hydra import compose_and_dump

    monkeypatch.delenv("XIB_ROOT", raising=False)
    hydra = Config(dvc_dir=str(REPO / ".dvc"))["hydra"]
    assert hydra["enabled"] is True
    out = tmp_path / "params.yaml"
    overrides = ["data.discrn.seed=7", "train.steps=3"]
    compose_and_dump(out, str(REPO / hydra["config_dir"]), None, hydra["config_name"], str(REPO), overrides)
    ours = _resolved(compose_params(overrides))
    assert not _differences(yaml.safe_load(out.read_text()), ours)
    assert ours["data"]["discrn"]["seed"] == 7


def _copy_worktree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored): uncommitted work included."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(args: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_dvc_repro_skips_unchanged_stages_and_exp_run_reruns_only_discrn(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_worktree(repo)
    env = {k: v for k, v in os.environ.items() if k not in {"XIB_ROOT", "PREFECT_API_URL"}}
    # dvc runs stage commands through a shell with the caller's PATH; the copy's code, not the checkout's
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(repo), DVC_NO_ANALYTICS="1")
    dvc = [str(BIN / "dvc")]
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "config", "user.name", "xib test"], repo, env)
    _run(["git", "config", "user.email", "xib@example.invalid"], repo, env)
    _run([*dvc, "config", "--local", "core.site_cache_dir", str(tmp_path / "dvc-site")], repo, env)
    _run([str(BIN / "xib"), "params", *TINY], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny"], repo, env)

    first = _run([*dvc, "repro", "instruct", "discrn"], repo, env)
    for stage in ("world", "validate", "instruct", "discrn"):
        assert f"Running stage '{stage}'" in first
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"world", "validate", "instruct", "discrn"} <= set(lock)
    assert lock["world"]["params"]["params.yaml"]["data.world"]["items_per_modality"] == 32
    before = (repo / "data/discrn/image_pc/test.json").read_bytes()

    started = time.perf_counter()
    again = _run([*dvc, "repro", "instruct", "discrn"], repo, env)
    print(f"no-op `dvc repro instruct discrn`: {time.perf_counter() - started:.2f} s")
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again

    # the remote is the config's local folder (xib.data.versioning writes it to .dvc/config.local)
    pushed = _run([str(BIN / "xib"), "data-push"], repo, env)
    assert any((repo / ".cache/dvc-remote").rglob("*")), pushed
    assert "in sync" in _run([*dvc, "status", "--cloud"], repo, env)

    _run(["git", "add", "dvc.lock"], repo, env)
    _run(["git", "commit", "-qm", "lock"], repo, env)
    # -S recomposes params.yaml from conf/ with only the overrides given, so the tiny ones are repeated
    sets = [arg for override in [*TINY, "data.discrn.seed=7"] for arg in ("-S", override)]
    exp = _run([*dvc, "exp", "run", *sets, "instruct", "discrn"], repo, env)
    assert "Running stage 'discrn'" in exp
    for stage in ("world", "validate", "instruct"):
        assert f"Stage '{stage}' didn't change, skipping" in exp
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["data"]["discrn"]["seed"] == 7
    assert params["data"]["world"]["items_per_modality"] == 32
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["discrn"]["params"]["params.yaml"]["data.discrn"]["seed"] == 7
    assert (repo / "data/discrn/image_pc/test.json").read_bytes() != before
