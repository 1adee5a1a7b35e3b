"""The registered model served: pyfunc load by alias, `xib ask`, and `mlflow models serve` over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from xib.config import load_config
from xib.data.media import encode
from xib.eval.run import run_eval
from xib.eval.testing import make_tiny_project
from xib.registry import registry as reg
from xib.registry.asking import split_overrides, strip_answer_cue

OVERRIDES = [
    "eval.modalities=[image,audio]",
    "eval.discrn.pairs=[]",
    "eval.tasks=[caption]",
    "eval.plots=false",
    "eval.threads=1",
    "gate.model_name=xib-serve-test",
    "~gate.floors",  # a tiny untrained project: the default floors would refuse it
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny project evaluated, gated, promoted to champion; plus an image and a WAV to ask about."""
    root = tmp_path_factory.mktemp("serve")
    old = os.environ.get("XIB_ROOT")
    os.environ["XIB_ROOT"] = str(root)
    try:
        cfg = load_config(OVERRIDES)
        make_tiny_project(cfg, modalities=("image", "audio"), items=3, real_encoders=True)
        run_eval(cfg)
        payload = reg.run_gate(cfg)
        assert payload["decision"] == "promote" and not payload["promoted"]
        assert reg.promote_version(cfg) == (payload["version"], None)
    finally:
        os.environ.pop("XIB_ROOT") if old is None else os.environ.__setitem__("XIB_ROOT", old)
    rng = np.random.default_rng(0)
    png, wav = root / "a.png", root / "b.wav"
    png.write_bytes(encode("image", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)))
    wav.write_bytes(encode("audio", (0.1 * rng.standard_normal(16000)).astype(np.float32)))
    return root, [str(png), str(wav)]


def _expected(root: Path, media: list[str], question: str) -> str:
    """The same question answered in-process from the project's own files (not the registry)."""
    from xib.registry.pyfunc import modality_of
    from xib.runtime.checkpoints import checkpoint_dirs
    from xib.runtime.runner import load_model_from_dirs

    cfg = load_config([f"paths.root={root}", *OVERRIDES])
    runner = load_model_from_dirs(cfg, checkpoint_dirs(cfg))
    return runner.ask([(modality_of(m), Path(m).read_bytes()) for m in media], question)


def test_champion_loads_as_pyfunc_and_answers_over_mixed_media(served, monkeypatch) -> None:
    import mlflow

    root, media = served
    monkeypatch.setenv("XIB_ROOT", str(root))
    cfg = load_config(OVERRIDES)
    reg.client(cfg)
    model = mlflow.pyfunc.load_model("models:/xib-serve-test@champion")
    question = "which of the two is more likely in a city ?"
    answers = model.predict(
        [{"question": question, "media": media}, {"question": "what is this ?", "media": media[:1]}]
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert answers[0] == _expected(root, media, question)
    with pytest.raises(Exception, match="needs at least one media file"):
        model.predict([{"question": "hello", "media": []}])

    res = subprocess.run(
        [sys.executable, "-m", "xib.cli", "ask", "--model", "champion", "--input", media[0], "--input", media[1],
         question, *OVERRIDES],
        capture_output=True, text=True, env={**os.environ, "XIB_ROOT": str(root)}, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.endswith(strip_answer_cue(answers[0]) + "\n"), res.stdout[-500:]


def _xib_ask(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xib.cli", "ask", *args], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_xib_ask_checks_inputs_first_and_finds_the_project_registry(served, tmp_path, monkeypatch) -> None:
    from xib.errors import XibError
    from xib.registry.commands import ask_command
    from xib.runtime.project import project_config

    root, media = served
    monkeypatch.delenv("XIB_ROOT", raising=False)
    name = "gate.model_name=xib-serve-test"
    # refused before any model loads (or any registry opens): a third input, a missing file, a .txt
    for args, words in (
        (["--input", media[0], "--input", media[1], "--input", media[0], "which ?"], "3 inputs given"),
        (["--input", str(root / "nope.png"), "what ?"], "no such file"),
        (["--input", str(root / "notes.txt"), "what ?"], "cannot tell the modality"),
    ):
        with pytest.raises(XibError, match=words):
            ask_command([*args, name])
    # from an unrelated folder: an error saying where it looked, and no empty mlflow.db left behind
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    try:
        _, where = project_config(load_config, [name])
        assert str(elsewhere) not in where  # (the checkout xib runs from may hold a registry of its own)
    except XibError as err:
        assert "no model registry found" in str(err) and str(elsewhere / "mlflow.db") in str(err)
    assert not (elsewhere / "mlflow.db").exists()
    # the CLI from a folder inside the project, without XIB_ROOT: the project's registry is found and
    # named; a question with "=" in it stays the question; the answer has no "answer:" cue
    inside = root / "some" / "folder"
    inside.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "XIB_ROOT"}
    res = _xib_ask(["--input", media[0], "is x=1 in this picture ?", name, "eval.threads=1"], inside, env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"registry: {root / 'mlflow.db'}" in res.stderr and not (inside / "mlflow.db").exists()
    assert res.stdout.strip() == strip_answer_cue(_expected(root, media[:1], "is x=1 in this picture ?"))


def test_strip_answer_cue() -> None:
    assert strip_answer_cue("Answer : first") == "first"
    assert strip_answer_cue("answer: a red cube") == "a red cube"
    assert strip_answer_cue("the answer: is here") == "the answer: is here"


def test_overrides_are_config_keys_and_the_rest_is_the_question() -> None:
    own, overrides = split_overrides(
        ["--input", "a.png", "is", "x=1", "?", "eval.threads=1", "a=b", "+serve.port=9"]
    )
    assert overrides == ["eval.threads=1", "+serve.port=9"]
    assert own == ["--input", "a.png", "is", "x=1", "?", "a=b"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_answers_http_on_loopback(served) -> None:
    root, media = served
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "XIB_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
           "XIB_SERVE_THREADS": "1", "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    proc = subprocess.Popen(
        [str(mlflow_bin), "models", "serve", "-m", "models:/xib-serve-test@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {proc.stdout.read()[-3000:] if proc.stdout else ''}")
            time.sleep(0.5)
        question = "which of the two is more likely in a city ?"
        body = json.dumps({"dataframe_records": [{"question": question, "media": media}]}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())["predictions"]
        assert answer == [_expected(root, media, question)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)  # the server and its uvicorn worker, started in their own session
            proc.wait(timeout=30)
        shutil.rmtree(root / "mlruns" / ".trash", ignore_errors=True)


def test_gate_end_to_end_refuses_regression_promotes_improvement_and_rolls_back(served, monkeypatch) -> None:
    """Runs last: it moves the champion of the module's registry."""
    root, _ = served
    monkeypatch.setenv("XIB_ROOT", str(root))
    cfg = load_config([*OVERRIDES, "gate.auto_promote=true"])
    champion = reg.alias_version(cfg, reg.CHAMPION)
    out = Path(cfg.eval.output)

    def plant(delta: float) -> None:
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["caption/image/cider"] += delta
        candidate = json.loads((out / "candidate.json").read_text())
        candidate["metrics"] = metrics
        (out / "candidate.json").write_text(json.dumps(candidate))
        (out / "metrics.json").write_text(json.dumps(metrics))

    plant(-1.0)
    refused = reg.run_gate(cfg)
    assert refused["decision"] == "refuse" and not refused["promoted"]
    assert any("caption/image/cider" in r and "regresses" in r for r in refused["reasons"])
    assert reg.alias_version(cfg, reg.CHAMPION) == champion
    assert reg.alias_version(cfg, reg.CHALLENGER) == refused["version"]
    tags = reg.client(cfg).get_model_version("xib-serve-test", refused["version"]).tags
    assert tags["gate.decision"] == "refuse" and "regresses" in tags["gate.regression.caption/image/cider"]
    decision_file = json.loads((root / "artifacts/gate/decision.json").read_text())
    assert decision_file["version"] == refused["version"]

    plant(+2.0)
    passed = reg.run_gate(cfg)
    assert passed["decision"] == "promote" and passed["promoted"]
    assert reg.alias_version(cfg, reg.CHAMPION) == passed["version"]
    assert reg.alias_version(cfg, reg.PREVIOUS) == champion

    assert reg.rollback(cfg) == champion
    assert reg.alias_version(cfg, reg.CHAMPION) == champion
