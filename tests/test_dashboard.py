"""The ops dashboard, rendered in headless Chromium over a real MLflow registry and a real Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import free_port, wait_http

from xib.config import load_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
FLOOR = 0.5
# three candidates: v1 passes (first champion), v2 falls below the DisCRn floor, v3 passes and is
# promoted, then rolled back to v1
CANDIDATES = [
    {"discrn/image_pc": 0.62, "caption/image/cider": 0.80, "qa/image/accuracy": 0.55, "baseline/x": 0.3},
    {"discrn/image_pc": 0.41, "caption/image/cider": 0.85, "qa/image/accuracy": 0.60, "baseline/x": 0.3},
    {"discrn/image_pc": 0.66, "caption/image/cider": 0.83, "qa/image/accuracy": 0.58, "baseline/x": 0.3},
]


class Elements(HTMLParser):
    """Every element of a serialised DOM with its attributes and all the text inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.all: list[dict] = []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        element["within"] = [e["attrs"]["id"] for e in self.stack if e["attrs"].get("id")]  # ancestors' ids
        self.all.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self.stack:
            element["text"] += data

    def with_class(self, name: str) -> list[dict]:
        return [e for e in self.all if name in (e["attrs"].get("class") or "").split()]

    def by_id(self, name: str) -> dict:
        return next(e for e in self.all if e["attrs"].get("id") == name)


def _chromium(tmp: Path, *args: str) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    done = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _register(cfg, metrics: dict[str, float], source: Path) -> str:
    """A real model version: a run with the metrics, a registered version of it, alias challenger."""
    import mlflow

    from xib.registry import registry

    mc = registry.client(cfg)
    with mlflow.start_run(experiment_id=registry.experiment_id(cfg)) as run:
        mlflow.log_metrics(metrics)
    source.mkdir(parents=True)
    (source / "MLmodel").write_text("artifact_path: model\n")
    if not mc.search_registered_models(f"name='{cfg.gate.model_name}'"):
        mc.create_registered_model(cfg.gate.model_name)
    version = str(mc.create_model_version(cfg.gate.model_name, str(source), run_id=run.info.run_id).version)
    mc.set_registered_model_alias(cfg.gate.model_name, registry.CHALLENGER, version)
    return version


def _build_registry(cfg, tmp: Path) -> None:
    from xib.registry import registry
    from xib.registry.gate import decide_with_policy

    for i, metrics in enumerate(CANDIDATES):
        version = _register(cfg, metrics, tmp / f"model-{i}")
        champion = registry.alias_version(cfg, registry.CHAMPION)
        reference = registry.version_metrics(cfg, champion) if champion else None
        decision = decide_with_policy(metrics, reference, cfg.gate, champion, version)
        registry.record_decision(cfg, version, decision)
        if decision.promote:
            registry.promote(cfg, version, expected_champion=champion)
    registry.rollback(cfg)


# Eval metrics of three pairs (one that none of the code names), both scorings, both input orders.
EVAL = {
    "discrn/image_pc": 0.62,
    "discrn/image_pc/image_first": 0.66,
    "discrn/image_pc/pc_first": 0.58,
    "discrn/image_pc/logits": 0.44,
    "discrn/image_pc/logits/image_first": 0.47,
    "discrn/image_pc/logits/pc_first": 0.41,
    "discrn/image_pc/answered": 0.98,
    "chance/image_pc": 0.5,
    "discrn/audio_video": 0.71,
    "discrn/audio_video/audio_first": 0.74,
    "discrn/audio_video/video_first": 0.68,
    "discrn/image_audio": 0.55,
    "discrn/image_audio/audio_first": 0.53,
    "discrn/image_audio/image_first": 0.57,
    "caption/image/cider": 0.8,
}
SECTIONS = ("champion", "training", "evaluation", "versions", "metrics", "runs", "data")


def _align_runs(cfg) -> dict[str, str]:
    """Alignment runs as the launcher leaves them: image finished with curves, pc failed after one log."""
    from mlflow.entities import Metric

    from xib.registry import registry

    mc = registry.client(cfg)
    experiment = mc.get_experiment_by_name(cfg.infra.mlflow_experiment).experiment_id
    ids = {}
    for modality, train, val, status in (
        ("image", [2.0, 1.5, 1.1, 0.9, 0.8], [1.4, 0.95], "FINISHED"),
        ("pc", [3.1], [2.9], "FAILED"),
    ):
        run = mc.create_run(experiment, tags={"xib.stage": "align", "xib.modality": modality})
        every = 10
        metrics = [Metric("train/loss", v, 0, every * (i + 1)) for i, v in enumerate(train)]
        metrics += [
            Metric("val/loss", v, 0, every * len(train) * (i + 1) // len(val)) for i, v in enumerate(val)
        ]
        if status == "FINISHED":
            metrics.append(Metric("final/loss", train[-1], 0, every * len(train)))
        mc.log_batch(run.info.run_id, metrics=metrics)
        mc.set_terminated(run.info.run_id, status=status)
        ids[modality] = run.info.run_id
    return ids


def _evaluation_and_data(cfg, root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(cfg.eval.output)
    (out / "plots").mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(EVAL))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["image", "pc"], [0.8, 0.6])
    fig.savefig(out / "plots" / "per_modality.png")
    plt.close(fig)
    manifest = root / "data/world/pc/val/manifest.parquet"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame({"item_id": [f"pc-{i}" for i in range(5)]}).to_parquet(manifest)
    instruct = root / "data/instruct/image/train.jsonl"
    instruct.parent.mkdir(parents=True)
    instruct.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(7)))
    discrn = root / "data/discrn/image_audio/test.json"
    discrn.parent.mkdir(parents=True)
    discrn.write_text(json.dumps([{"id": i} for i in range(3)]))


def _section_shots(tmp: Path, page: Path) -> dict[str, Path]:
    """One screenshot per section: the page itself, with every other section hidden."""
    shots = {}
    html = page.read_text()
    for section in SECTIONS:
        alone = tmp / f"section-{section}.html"
        hide = f"<style>section {{ display: none; }} section#{section} {{ display: block; }}</style></head>"
        alone.write_text(html.replace("</head>", hide, 1))
        shots[section] = tmp / f"section-{section}.png"
        _chromium(tmp, f"--screenshot={shots[section]}", "--window-size=1400,1100", alone.as_uri())
    return shots


def _ink(png: Path) -> tuple[int, str]:
    """Distinct colours in a screenshot (a blank or unstyled page has a handful) and its digest."""
    import hashlib

    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    return len(colours), hashlib.sha256(png.read_bytes()).hexdigest()


def _start_flows(env: dict) -> subprocess.Popen:
    """A flow that completes and one that fails, against the test's Prefect server."""
    script = textwrap.dedent(
        """
        import json
        from prefect import flow, task

        @task(name="stage", task_run_name="{name}")
        def stage(name):
            return name

        @flow(name="xib-probe")
        def probe():
            return stage("data")

        @flow(name="xib-broken")
        def broken():
            raise ValueError("boom")

        names = {"xib-probe": probe(return_state=True).state_details.flow_run_id}
        names["xib-broken"] = broken(return_state=True).state_details.flow_run_id
        print(json.dumps({k: str(v) for k, v in names.items()}))
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run_names(flows: subprocess.Popen, api: str) -> dict[str, str]:
    out, err = flows.communicate(timeout=180)
    assert flows.returncode == 0, err[-3000:]
    ids = json.loads(out.strip().splitlines()[-1])
    names = {}
    for flow, run_id in ids.items():
        with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as response:
            names[flow] = json.loads(response.read())["name"]
    return names


@pytest.fixture
def dashboard_cfg(xib_root, prefect_server):
    cfg = load_config([f"infra.prefect_api_url={prefect_server['PREFECT_API_URL']}"])
    cfg.gate.floors = {"discrn/image_pc": FLOOR}  # only the floor this test checks
    return cfg


def test_dashboard_shows_registry_history_runs_and_data(dashboard_cfg, prefect_server, xib_root, tmp_path):
    from xib.dashboard import write_dashboard

    cfg = dashboard_cfg
    flows = _start_flows(dict(prefect_server))  # runs while the registry is built
    _build_registry(cfg, tmp_path)
    align_runs = _align_runs(cfg)
    cfg.gate.floors["discrn/*/logits/*"] = FLOOR  # a pattern floor, after the gate judged the versions above
    _evaluation_and_data(cfg, xib_root)
    run_names = _run_names(flows, prefect_server["PREFECT_API_URL"])
    manifest = xib_root / "data/world/image/train/manifest.parquet"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"PAR1 not really parquet, only hashed")
    (xib_root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  world:\n    cmd: xib --params params.yaml world\n    outs:\n"
        "    - path: data/world\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef.dir\n"
        "      size: 4096\n      nfiles: 9\n"
    )

    cfg.infra.dashboard.mlflow_ui = "http://ops:hunter2@mlflow.test:5000/"  # credentials never reach the page
    page = write_dashboard(cfg)
    assert page == xib_root / "artifacts/dashboard/index.html"
    assert "hunter2" not in page.read_text()
    dom = Elements()
    dom.feed(_chromium(tmp_path, "--dump-dom", page.as_uri()))

    assert dom.by_id("champion")["attrs"]["data-champion"] == "1"  # rolled back from v3
    rows = {e["attrs"]["data-version"]: e for e in dom.with_class("version")}
    assert {v: e["attrs"]["data-decision"] for v, e in rows.items()} == {
        "1": "promote",
        "2": "refuse",
        "3": "promote",
    }
    assert "below the floor 0.5" in rows["2"]["text"] and "drops (may not drop)" in rows["2"]["text"]
    failed = [e for e in dom.with_class("failed") if e["tag"] == "li"]
    assert {(e["attrs"]["data-rule"], e["attrs"]["data-metric"]) for e in failed} == {
        ("floor", "discrn/image_pc"),
        ("no_drop", "discrn/image_pc"),
    }
    assert "meets the floor 0.5" in rows["3"]["text"] and "vs champion 0.62" in rows["3"]["text"]
    assert "champion" in rows["1"]["text"] and "challenger" in rows["3"]["text"]
    assert [e["text"].split()[:2] for e in dom.with_class("rolled-back")] == [["rolled", "back"]]
    assert "rolled back" in rows["3"]["text"] and "rolled back" not in rows["1"]["text"]
    events = [(e["attrs"]["data-version"], e["attrs"]["data-event"]) for e in dom.with_class("event")]
    assert events == [("1", "promoted"), ("3", "promoted"), ("3", "rolled back")]
    assert dom.by_id("history")["text"].split() == ["v1"]

    metric_rows = {e["attrs"]["data-metric"]: e for e in dom.with_class("metric")}
    assert set(metric_rows) == set(CANDIDATES[0])
    below = [e["text"] for e in dom.with_class("below") if "metric-table" in e["within"]]
    assert below == ["0.41"]
    assert "0.5" in metric_rows["discrn/image_pc"]["text"]
    svg_text = " ".join(e["text"] for e in dom.all if e["tag"] == "svg")
    assert "discrn/image_pc" in svg_text and "baseline/x" not in svg_text  # only gated metrics are plotted

    runs = {e["attrs"]["data-flow"]: e for e in dom.with_class("run")}
    assert runs["xib-probe"]["attrs"]["data-state"] == "COMPLETED"
    assert runs["xib-broken"]["attrs"]["data-state"] == "FAILED"
    for flow, name in run_names.items():
        assert name in runs[flow]["text"]
        assert runs[flow]["text"].strip().endswith(" s")

    dvc_out = dom.with_class("dvc-out")
    assert len(dvc_out) == 1 and "0123456789abcdef0123456789abcdef.dir" in dvc_out[0]["text"]
    import hashlib

    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert digest[:16] in dom.with_class("manifest")[0]["text"]

    # training: a row per modality with its final losses; curves drawn only from two points on
    training = {e["attrs"]["data-modality"]: e for e in dom.with_class("training-run")}
    assert {m: e["attrs"]["data-status"] for m, e in training.items()} == {
        "image": "FINISHED",
        "pc": "FAILED",
    }
    assert align_runs["image"][:12] in training["image"]["text"]
    assert "0.8" in training["image"]["text"] and "0.95" in training["image"]["text"]
    assert "3.1" in training["pc"]["text"] and "2.9" in training["pc"]["text"]  # one point: in the table
    plot_text = dom.by_id("training-plot")["text"]
    assert "align image" in plot_text and "align pc" not in plot_text

    links = {e["attrs"]["href"] for e in dom.all if e["tag"] == "a"}
    ui = "http://mlflow.test:5000/#"
    assert f"{ui}/models/{cfg.gate.model_name}/versions/1" in links
    assert any(
        h.startswith(f"{ui}/experiments/") and h.endswith(f"/runs/{align_runs['image']}") for h in links
    )

    # DisCRn: every pair in the metrics, one column per input order, the floor beside the value
    tables = {e["attrs"]["data-pair"]: e for e in dom.all if e["attrs"].get("class") == "discrn"}
    assert set(tables) == {"audio_video", "image_audio", "image_pc"}
    assert "audio_first" in tables["image_audio"]["text"] and "image_first" in tables["image_audio"]["text"]
    cells = {
        e["attrs"]["data-metric"]: e for e in dom.all if e["tag"] == "td" and e["attrs"].get("data-metric")
    }
    assert "(floor 0.5)" in cells["discrn/image_pc"]["text"]
    assert "below" not in cells["discrn/image_pc"]["attrs"]["class"]
    assert "below" in cells["discrn/image_pc/logits/pc_first"]["attrs"]["class"]  # 0.41 < 0.5 (pattern floor)
    assert "below" not in cells["discrn/audio_video"]["attrs"]["class"]
    assert [e["attrs"]["alt"] for e in dom.all if e["tag"] == "img"] == ["per_modality"]

    # failed runs in red with their cause; stage durations from the task runs
    assert "failed-run" in runs["xib-broken"]["attrs"]["class"] and "boom" in runs["xib-broken"]["text"]
    assert "failed-run" not in runs["xib-probe"]["attrs"]["class"]
    stages = [e for e in dom.all if e["attrs"].get("class") == "stage"]
    assert [(e["attrs"]["data-stage"], e["attrs"]["data-state"]) for e in stages] == [("data", "COMPLETED")]
    # rows per split, from the files themselves
    rows = {
        (e["attrs"]["data-kind"], e["attrs"]["data-group"], e["attrs"]["data-split"]): e["text"]
        for e in dom.with_class("split-rows")
    }
    assert (
        "5" in rows[("world manifest", "pc", "val")]
        and "unreadable" in rows[("world manifest", "image", "train")]
    )
    assert "7" in rows[("instructions", "image", "train")] and "3" in rows[("DisCRn", "image_audio", "test")]

    shots = _section_shots(tmp_path, page)
    inks = {section: _ink(path) for section, path in shots.items()}
    assert len({digest for _, digest in inks.values()}) == len(SECTIONS)  # each shot shows its own section
    assert all(colours > 50 for colours, _ in inks.values()), inks


def test_dashboard_says_what_is_missing(xib_root, tmp_path):
    from xib.dashboard import write_dashboard

    dead = f"http://127.0.0.1:{free_port()}/api"
    page = write_dashboard(load_config([f"infra.prefect_api_url={dead}"]), tmp_path / "page.html")
    dom = Elements()
    dom.feed(_chromium(tmp_path, "--dump-dom", page.as_uri()))
    assert "No MLflow registry yet" in dom.by_id("registry-note")["text"]
    assert f"No Prefect server answered at {dead}" in dom.by_id("runs-note")["text"]
    assert not dom.with_class("version") and not dom.with_class("run")
    assert not (xib_root / "mlflow.db").exists()  # looking created nothing


def test_dashboard_command_serves_the_page_on_loopback(xib_root):
    port = free_port()
    env = dict(os.environ, XIB_ROOT=str(xib_root), PREFECT_API_URL="")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("xib")), "dashboard", "--serve", f"infra.dashboard.port={port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
            body = response.read().decode()
        assert "xib operations" in body
        assert "no local Prefect database" in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert (xib_root / "artifacts/dashboard/index.html").read_text() == body
