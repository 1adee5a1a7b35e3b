"""The stage driver the Prefect flows use: dvc.yaml parsing, keys, and skipping unchanged stages."""

from pathlib import Path

import yaml

from xib.commands import COMMANDS
from xib.config import load_config
from xib.stages import load_stages, run_stage, stage_key

REPO = Path(__file__).resolve().parents[1]


def test_dvc_yaml_declares_every_stage_of_the_data_path():
    stages = load_stages()
    for name in ("world", "validate", "instruct", "discrn", "bootstrap", "evaluate", "gate", "align-video"):
        assert name in stages
    for modality in ("image", "pc", "audio", "video"):
        assert stages[f"features@{modality}"].args == (f"modality.name={modality}",)
    assert stages["align@pc"].outs == ("artifacts/align/pc",)
    assert "artifacts/align/image" in stages["align-video"].deps
    assert "artifacts/eval/metrics.json" in stages["evaluate"].outs


def test_every_stage_command_is_a_registered_xib_command():
    from xib.commands import load_commands

    commands = load_commands()
    missing = {s.command for s in load_stages().values()} - set(commands)
    assert not missing, f"dvc.yaml names commands xib does not have: {missing}"


def _toy_pipeline(tmp_path: Path) -> Path:
    dvc_file = tmp_path / "dvc.yaml"
    spec = {
        "stages": {
            "toy": {
                "cmd": "xib --params params.yaml toy-stage",
                "deps": ["data/in.txt"],
                "params": ["train.steps"],
                "outs": ["data/out.txt"],
            }
        }
    }
    dvc_file.write_text(yaml.safe_dump(spec))
    return dvc_file


def test_unchanged_stage_is_skipped_and_a_changed_dep_or_param_reruns(xib_root, monkeypatch):
    calls = []

    def toy(overrides):
        cfg = load_config(overrides)
        calls.append(cfg.train.steps)
        Path(cfg.paths.data, "out.txt").write_text((Path(cfg.paths.data) / "in.txt").read_text().upper())
        return 0

    monkeypatch.setitem(COMMANDS, "toy-stage", toy)
    (xib_root / "data").mkdir()
    (xib_root / "data/in.txt").write_text("hello")
    stage = load_stages(_toy_pipeline(xib_root))["toy"]

    assert run_stage(stage, [], xib_root) == "ran"
    assert run_stage(stage, [], xib_root) == "skipped"
    assert len(calls) == 1
    (xib_root / "data/in.txt").write_text("changed")
    assert run_stage(stage, [], xib_root) == "ran"
    assert run_stage(stage, ["train.steps=5"], xib_root) == "ran"
    assert calls[-1] == 5
    (xib_root / "data/out.txt").unlink()  # a missing output reruns too
    assert run_stage(stage, ["train.steps=5"], xib_root) == "ran"
    assert (xib_root / "data/out.txt").read_text() == "CHANGED"


def test_stage_key_depends_on_params_it_declares_only(xib_root):
    stage = load_stages()["align@image"]
    base = stage_key(stage, load_config(), xib_root)
    assert stage_key(stage, load_config(["train.steps=1"]), xib_root) != base
    assert stage_key(stage, load_config(["data.discrn.seed=99"]), xib_root) == base


def test_failed_stage_is_not_marked_done(xib_root, monkeypatch):
    import pytest

    from xib.errors import XibError

    monkeypatch.setitem(COMMANDS, "toy-stage", lambda overrides: 1)
    (xib_root / "data").mkdir()
    (xib_root / "data/in.txt").write_text("x")
    stage = load_stages(_toy_pipeline(xib_root))["toy"]
    with pytest.raises(XibError):
        run_stage(stage, [], xib_root)
    assert not (xib_root / ".cache/stages/toy.json").exists()


def test_flows_run_stages_as_child_processes(xib_root):
    import pytest

    from xib.errors import XibError

    (xib_root / "data").mkdir()
    (xib_root / "data/in.txt").write_text("x")
    spec = {
        "stages": {
            "show": {"cmd": "xib --params params.yaml config", "deps": ["data/in.txt"], "params": ["seed"]},
            "broken": {"cmd": "xib --params params.yaml no-such-command", "deps": ["data/in.txt"]},
        }
    }
    dvc_file = xib_root / "dvc.yaml"
    dvc_file.write_text(yaml.safe_dump(spec))
    stages = load_stages(dvc_file)
    assert run_stage(stages["show"], [], xib_root, in_process=False) == "ran"
    assert run_stage(stages["show"], [], xib_root, in_process=False) == "skipped"
    with pytest.raises(XibError, match="broken"):
        run_stage(stages["broken"], [], xib_root, in_process=False)


def test_a_stage_named_in_stage_nice_runs_its_child_at_that_niceness(xib_root, tmp_path, monkeypatch):
    import os
    import sys

    # the child is a script standing in for the interpreter: it records the niceness it was started at
    seen = tmp_path / "niceness.txt"
    child = tmp_path / "python"
    child.write_text(f"#!/bin/sh\nnice > {seen}\n")
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))
    (xib_root / "data").mkdir()
    (xib_root / "data/in.txt").write_text("x")
    dvc_file = xib_root / "dvc.yaml"
    # a real stage name of the repository's dvc.yaml, since infra.stage_nice is checked against it
    dvc_file.write_text(
        yaml.safe_dump({"stages": {"evaluate": {"cmd": "xib eval", "deps": ["data/in.txt"]}}})
    )
    stage = load_stages(dvc_file)["evaluate"]
    own = os.nice(0)
    run_stage(stage, ["+infra.stage_nice={evaluate: 7}"], xib_root, force=True, in_process=False)
    assert int(seen.read_text()) == min(own + 7, 19)
    run_stage(stage, [], xib_root, force=True, in_process=False)  # not named: the parent's niceness
    assert int(seen.read_text()) == own


def test_a_training_rank_in_its_own_session_keeps_the_stage_niceness():
    import subprocess
    import sys

    import pytest

    from xib.train.priority import AUTOGROUP

    if not AUTOGROUP.is_file():
        pytest.skip("this kernel has no autogroup scheduling")
    script = "from xib.train.priority import inherit_niceness as f; import pathlib; print(f()); "
    script += "print(pathlib.Path('/proc/self/autogroup').read_text())"
    # torchrun starts each worker like this: a new session, hence a new autogroup at the default nice 0
    ran = subprocess.run(
        ["nice", "-n", "7", sys.executable, "-c", script],
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
    )
    returned, group = ran.stdout.splitlines()[:2]
    assert returned == "7" and group.endswith("nice 7")


def test_stage_nice_naming_no_stage_of_dvc_yaml_is_one_config_error(xib_root):
    import pytest

    from xib.config import ConfigError
    from xib.stages import stage_niceness

    stage = load_stages()["align@pc"]
    assert stage_niceness(load_config([]), stage) == 10  # the demo's default
    with pytest.raises(ConfigError, match=r"^infra.stage_nice.align@smell=5: names no stage of dvc.yaml"):
        stage_niceness(load_config(["+infra.stage_nice={align@smell: 5}"]), stage)
