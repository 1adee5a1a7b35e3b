"""The MLflow registry on sqlite under tmp_path: candidates, promotion races, rollback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xib.config import load_config
from xib.errors import XibError
from xib.registry import registry as reg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store migrated once (creating its tables takes seconds), copied per test."""
    root = tmp_path_factory.mktemp("mlflow-template")
    reg.client(load_config([f"paths.root={root}"])).search_experiments()
    return root / "mlflow.db"


@pytest.fixture
def cfg(xib_root: Path, empty_db: Path):
    shutil.copy(empty_db, xib_root / "mlflow.db")
    return load_config(["gate.model_name=xib-test"])


def _candidate(cfg, tmp: Path, metrics: dict[str, float], tag: str) -> str:
    folder = tmp / f"cand-{tag}"
    folder.mkdir()
    (folder / "provenance.json").write_text(f'{{"candidate": "{tag}"}}')
    return reg.register_candidate(cfg, metrics, {"provenance": str(folder / "provenance.json")})


def test_register_promote_and_rollback(cfg, tmp_path: Path) -> None:
    v1 = _candidate(cfg, tmp_path, {"discrn/image_pc": 0.6}, "a")
    assert reg.alias_version(cfg, reg.CHALLENGER) == v1
    assert reg.alias_version(cfg, reg.CHAMPION) is None
    assert reg.version_metrics(cfg, v1)["discrn/image_pc"] == pytest.approx(0.6)

    assert reg.promote(cfg, v1, expected_champion=None) is None
    v2 = _candidate(cfg, tmp_path, {"discrn/image_pc": 0.7}, "b")
    assert reg.alias_version(cfg, reg.CHALLENGER) == v2
    assert reg.alias_version(cfg, reg.CHAMPION) == v1  # registering never moves the champion
    assert reg.promote(cfg, v2, expected_champion=v1) == v1
    assert (reg.alias_version(cfg, reg.CHAMPION), reg.alias_version(cfg, reg.PREVIOUS)) == (v2, v1)

    v3 = _candidate(cfg, tmp_path, {"discrn/image_pc": 0.8}, "c")
    reg.promote(cfg, v3, expected_champion=v2)
    assert (reg.alias_version(cfg, reg.CHAMPION), reg.alias_version(cfg, reg.PREVIOUS)) == (v3, v2)

    assert reg.rollback(cfg) == v2
    assert (reg.alias_version(cfg, reg.CHAMPION), reg.alias_version(cfg, reg.PREVIOUS)) == (v2, v1)
    assert reg.rollback(cfg) == v1
    assert reg.alias_version(cfg, reg.CHAMPION) == v1 and reg.alias_version(cfg, reg.PREVIOUS) is None
    with pytest.raises(XibError, match="no previous champion"):
        reg.rollback(cfg)
    tags = reg.client(cfg).get_model_version("xib-test", v3).tags
    assert "rolled_back_at" in tags and "promoted_at" in tags


def test_promotion_against_a_stale_champion_is_refused(cfg, tmp_path: Path) -> None:
    v1 = _candidate(cfg, tmp_path, {"m": 1.0}, "a")
    v2 = _candidate(cfg, tmp_path, {"m": 1.0}, "b")
    reg.promote(cfg, v1, expected_champion=None)
    with pytest.raises(reg.PromotionConflict, match="champion moved"):
        reg.promote(cfg, v2, expected_champion=None)  # judged when there was no champion
    assert reg.alias_version(cfg, reg.CHAMPION) == v1


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from xib.config import load_config
    from xib.registry import registry as reg
    cfg = load_config(["gate.model_name=xib-test"])
    version, expected, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    reg.client(cfg)  # connect before the start signal
    (go.parent / f"ready-{version}").touch()
    while not go.exists():
        time.sleep(0.01)
    try:
        reg.promote(cfg, version, expected_champion=expected)
        print("won")
    except reg.PromotionConflict as err:
        print("lost:", err)
    """
)


def test_racing_promotions_leave_one_consistent_champion(cfg, tmp_path: Path) -> None:
    v1 = _candidate(cfg, tmp_path, {"m": 1.0}, "a")
    reg.promote(cfg, v1, expected_champion=None)
    v2 = _candidate(cfg, tmp_path, {"m": 2.0}, "b")
    v3 = _candidate(cfg, tmp_path, {"m": 3.0}, "c")
    go = tmp_path / "go"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, v, v1, str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for v in (v2, v3)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{v}").exists() for v in (v2, v3)) and time.monotonic() < deadline:
        time.sleep(0.05)  # both interpreters up, imports done: then they start together
    go.touch()
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    winners = [v for v, out in zip((v2, v3), outs) if out == "won"]
    assert len(winners) == 1, outs  # both judged against v1: exactly one may move it
    assert sum(out.startswith("lost:") for out in outs) == 1
    assert reg.alias_version(cfg, reg.CHAMPION) == winners[0]
    assert reg.alias_version(cfg, reg.PREVIOUS) == v1
    history = reg.client(cfg).get_registered_model("xib-test").tags[reg.HISTORY_TAG]
    assert history == f"{v1},{winners[0]}"


def test_promotion_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / "promote.lock"
    with reg.promotion_lock(lock, timeout_s=1.0):
        code = (
            "import sys; from xib.registry.registry import promotion_lock\n"
            f"with promotion_lock({str(lock)!r}, timeout_s=0.3): pass"
        )
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert res.returncode != 0 and "holds the registry lock" in res.stderr
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_a_first_run_that_passes_the_gate_ends_with_a_champion(cfg, tmp_path: Path) -> None:
    """What `xib demo` prints last: a first candidate that passed is promoted; later ones wait for a command."""
    from xib.registry.gate import decide
    from xib.registry.outcome import settle

    def judged(tag: str) -> dict:
        version = _candidate(cfg, tmp_path, {"discrn/image_pc": 0.9}, tag)
        champion = reg.alias_version(cfg, reg.CHAMPION)
        decision = decide({"discrn/image_pc": 0.9}, None, floors={"discrn/image_pc": 0.75}, tolerance=0.0,
                          no_drop=[], champion_version=champion, candidate_version=version)  # fmt: skip
        reg.record_decision(cfg, version, decision)
        return {"decision": "promote", "version": version, "reasons": [], "promoted": False}

    first = judged("a")
    assert settle(cfg, first)[0] == f"champion: version {first['version']} (the first to pass the gate)"
    assert reg.champion_state(cfg)["champion"] == first["version"]
    assert settle(cfg, first)[0] == f"champion: version {first['version']}"  # settled twice: no change
    second = judged("b")
    lines = settle(cfg, second)
    assert lines[-1] == f"next: xib promote --version {second['version']}"
    assert reg.alias_version(cfg, reg.CHAMPION) == first["version"]  # a champion is never replaced unasked
