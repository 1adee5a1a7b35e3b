"""`xib dashboard`: one self-contained HTML page on the state of the system.

It reads, and never changes: the MLflow model registry (every version, the gate's verdict and its
reasons, metrics against the gate's floors, the champion over time), the alignment runs and the last
evaluation (xib/dashboard_training.py), Prefect's API (recent flow runs with their states, causes of
failure and per-stage durations) and the data set versions (dvc.lock, the stage driver's records,
the world manifests' hashes, rows per split). Plots are inline SVG; the page needs no network. When a
source is missing the page says so instead of showing anything made up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError

if TYPE_CHECKING:
    from xib.config import XibConfig

GATE_META_TAGS = {"gate.decision", "gate.summary", "gate.champion"}
STATE_COLOURS = {
    "COMPLETED": "#1a7f37",
    "FAILED": "#cf222e",
    "CRASHED": "#cf222e",
    "CANCELLED": "#6e7781",
    "RUNNING": "#0969da",
    "PENDING": "#9a6700",
    "SCHEDULED": "#9a6700",
    "PAUSED": "#9a6700",
    "CANCELLING": "#6e7781",
}


def _iso_ms(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- the model registry ------------------------------------------------------------------------


def _gate_checks(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The gate's per-metric reasons (`gate.<rule>.<metric>` tags); failed ones are those the
    refusal summary names."""
    summary = tags.get("gate.summary", "")
    refused = tags.get("gate.decision") == "refuse"
    checks = []
    for key, reason in sorted(tags.items()):
        if not key.startswith("gate.") or key in GATE_META_TAGS or key.count(".") < 2:
            continue
        _, rule, metric = key.split(".", 2)
        checks.append(
            {"rule": rule, "metric": metric, "reason": reason, "failed": refused and reason in summary}
        )
    return checks


def collect_registry(cfg: XibConfig) -> dict[str, Any]:
    """Every version of `cfg.gate.model_name` with its verdict, reasons, metrics and aliases."""
    uri = cfg.infra.mlflow_tracking_uri
    name = cfg.gate.model_name
    floors = {str(k): float(v) for k, v in cfg.gate.floors.items()}
    view: dict[str, Any] = {
        "uri": uri,
        "model": name,
        "versions": [],
        "note": None,
        "floors": floors,
        "ui": "",
    }
    view["policy"] = {
        "tolerance": cfg.gate.tolerance,
        "tolerances": {str(k): float(v) for k, v in cfg.gate.tolerances.items()},
        "no_drop": [str(m) for m in cfg.gate.no_drop],
        "compare": [str(m) for m in cfg.gate.compare],
    }
    from xib.mlflow_store import sqlite_path

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        view["note"] = f"No MLflow registry yet: {db} does not exist (`xib gate` registers candidates)."
        return view
    from mlflow.exceptions import MlflowException

    from xib.registry.registry import HISTORY_TAG, client

    try:
        mc = client(cfg)
        try:
            model = mc.get_registered_model(name)
        except MlflowException:
            view["note"] = f"No registered model {name!r} in {uri} yet (`xib gate` registers candidates)."
            return view
        versions = sorted(mc.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        runs = {v.run_id: mc.get_run(v.run_id) for v in versions if v.run_id}
    except (MlflowException, OSError) as err:
        view["note"] = f"The MLflow registry at {uri} could not be read: {err}"
        return view

    from xib.dashboard_training import mlflow_ui

    ui = mlflow_ui(cfg)
    view["ui"] = ui
    aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
    history = [v for v in (model.tags or {}).get(HISTORY_TAG, "").split(",") if v]
    events = []
    for mv in versions:
        record = _version_record(mv, runs.get(mv.run_id) if mv.run_id else None, ui, name, aliases, floors)
        view["versions"].append(record)
        if record["promoted_at"]:
            events.append((record["promoted_at"], 0, record["version"], "promoted"))
        if record["rolled_back_at"]:
            events.append((record["rolled_back_at"], 1, record["version"], "rolled back"))
    view["aliases"] = aliases
    view["champion"] = aliases.get("champion", "")
    view["history"] = history
    view["events"] = [{"time": t, "version": v, "event": e} for t, _, v, e in sorted(events)]
    gated = [*floors, *view["policy"]["no_drop"], *view["policy"]["compare"]]
    names = sorted({m for v in view["versions"] for m in v["metrics"]})
    view["metric_names"] = names
    view["gated_metrics"] = [m for m in names if any(fnmatchcase(m, p) for p in gated)]
    return view


def _version_record(
    mv: Any, run: Any, ui: str, name: str, aliases: Mapping[str, str], floors: Mapping[str, float]
) -> dict[str, Any]:
    """One registered version as the page shows it: verdict, checks, its run's metrics, aliases."""
    from xib.dashboard_training import run_link, version_link

    tags = dict(mv.tags or {})
    metrics = {k: float(v) for k, v in run.data.metrics.items()} if run is not None else {}
    below = sorted(m for m, floor in floors.items() if m in metrics and metrics[m] < floor)
    return {
        "version": str(mv.version),
        "link": version_link(ui, name, str(mv.version)),
        "run_link": run_link(ui, run.info.experiment_id, mv.run_id) if run is not None else "",
        "created": _iso_ms(mv.creation_timestamp),
        "run_id": mv.run_id or "",
        "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
        "decision": tags.get("gate.decision", ""),
        "summary": tags.get("gate.summary", ""),
        "judged_against": tags.get("gate.champion", ""),
        "checks": _gate_checks(tags),
        "metrics": metrics,
        "below_floor": below,
        "promoted_at": tags.get("promoted_at", ""),
        "rolled_back_at": tags.get("rolled_back_at", ""),
    }


def metrics_svg(registry: Mapping[str, Any]) -> str:
    """Each gated metric over the versions: verdict colours, floors dashed, champions ringed."""
    versions = registry["versions"]
    metrics = registry.get("gated_metrics") or []
    if len(versions) < 2 or not metrics:  # one version: its numbers are in the table, a plot adds nothing
        return ""
    import io

    import matplotlib
    from matplotlib.figure import Figure

    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    colours = {"promote": "#1a7f37", "refuse": "#cf222e"}
    champions = set(registry.get("history") or []) | {e["version"] for e in registry.get("events", [])}
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(4.2 * cols, 2.6 * rows), layout="constrained")
        for i, metric in enumerate(metrics):
            ax = fig.add_subplot(rows, cols, i + 1)
            points = [
                (int(v["version"]), v["metrics"][metric], v) for v in versions if metric in v["metrics"]
            ]
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], color="#8c959f", linewidth=1, zorder=1)
            for x, y, v in points:
                ax.scatter([x], [y], color=colours.get(v["decision"], "#6e7781"), s=28, zorder=2)
                if v["version"] in champions:
                    ax.scatter(
                        [x], [y], facecolors="none", edgecolors="#0969da", s=110, linewidths=1.5, zorder=3
                    )
            if metric in registry["floors"]:
                ax.axhline(registry["floors"][metric], color="#cf222e", linestyle="--", linewidth=1)
            ax.set_title(metric)
            ax.set_xticks(xs)
            ax.set_xlabel("version")
            ax.grid(alpha=0.3)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


# --- Prefect -----------------------------------------------------------------------------------


def _post(api: str, path: str, body: Mapping[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        f"{api.rstrip('/')}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def fetch_flow_runs(api: str, limit: int, timeout: float) -> dict[str, Any]:
    """The most recent started flow runs, their flows' and deployments' names, and the count of
    scheduled runs, from Prefect's REST API."""
    started = {"flow_runs": {"start_time": {"is_null_": False}}}
    runs = _post(api, "/flow_runs/filter", {**started, "sort": "START_TIME_DESC", "limit": limit}, timeout)
    flow_ids = sorted({r["flow_id"] for r in runs})
    deployment_ids = sorted({r["deployment_id"] for r in runs if r.get("deployment_id")})
    flows = _post(api, "/flows/filter", {"flows": {"id": {"any_": flow_ids}}}, timeout) if flow_ids else []
    deployments = (
        _post(api, "/deployments/filter", {"deployments": {"id": {"any_": deployment_ids}}}, timeout)
        if deployment_ids
        else []
    )
    scheduled = _post(
        api, "/flow_runs/count", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, timeout
    )
    run_ids = [r["id"] for r in runs]
    tasks = (
        _post(
            api,
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": run_ids}}, "sort": "EXPECTED_START_TIME_ASC"},
            timeout,
        )
        if run_ids
        else []
    )
    return {
        "runs": runs,
        "tasks": tasks,
        "flows": {f["id"]: f["name"] for f in flows},
        "deployments": {d["id"]: d["name"] for d in deployments},
        "scheduled": int(scheduled),
    }


def _parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _duration(run: Mapping[str, Any], now: dt.datetime) -> float:
    start, end = _parse_time(run.get("start_time")), _parse_time(run.get("end_time"))
    if end and start:
        return (end - start).total_seconds()
    if start and run.get("state_type") == "RUNNING":
        return (now - start).total_seconds()
    return float(run.get("total_run_time") or 0.0)


def _cause(run: Mapping[str, Any]) -> str:
    """The first line of a failed run's state message (Prefect puts the exception there)."""
    if run.get("state_type") not in ("FAILED", "CRASHED"):
        return ""
    message = str((run.get("state") or {}).get("message") or "").strip()
    return message.splitlines()[0] if message else "no message recorded"


def _run_rows(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    stages: dict[str, list[dict[str, Any]]] = {}
    for task in raw.get("tasks", []):
        stages.setdefault(task.get("flow_run_id") or "", []).append(
            {
                "name": task["name"],
                "state_type": task.get("state_type") or "",
                "duration_s": _duration(task, now),
                "colour": STATE_COLOURS.get(task.get("state_type") or "", "#6e7781"),
                "cause": _cause(task),
            }
        )
    rows = []
    for run in raw["runs"]:
        start = _parse_time(run.get("start_time"))
        rows.append(
            {
                "id": run["id"],
                "name": run["name"],
                "flow": raw["flows"].get(run["flow_id"], run["flow_id"]),
                "deployment": raw["deployments"].get(run.get("deployment_id"), ""),
                "state_type": run.get("state_type") or "",
                "state_name": run.get("state_name") or "",
                "start": start.strftime("%Y-%m-%d %H:%M:%SZ") if start else "",
                "duration_s": _duration(run, now),
                "colour": STATE_COLOURS.get(run.get("state_type") or "", "#6e7781"),
                "cause": _cause(run),
                "stages": stages.get(run["id"], []),
            }
        )
    return rows


def collect_runs(cfg: XibConfig, root: Path) -> dict[str, Any]:
    """Recent flow runs from the configured Prefect API, or from the local database Prefect's
    temporary API keeps (what `xib demo` uses), or a note saying there is neither."""
    dash = cfg.infra.dashboard
    limit, timeout = dash.flow_runs, dash.api_timeout_s
    api = str(cfg.infra.prefect_api_url or "") or os.environ.get("PREFECT_API_URL", "")
    view: dict[str, Any] = {"runs": [], "note": None, "scheduled": 0}
    if api:
        view["source"] = f"Prefect API {api}"
        try:
            raw = fetch_flow_runs(api, limit, timeout)
        except (OSError, ValueError) as err:  # URLError, timeouts and bad JSON
            view["note"] = (
                f"No Prefect server answered at {api} ({err}); start one with `prefect server start`."
            )
            return view
    else:
        home = Path(os.environ.get("PREFECT_HOME") or root / ".cache" / "prefect")
        view["source"] = f"Prefect's local database {home / 'prefect.db'} (no Prefect server configured)"
        if not (home / "prefect.db").is_file():
            view["note"] = (
                "No Prefect server configured (infra.prefect_api_url and PREFECT_API_URL are empty) and no "
                f"local Prefect database at {home / 'prefect.db'}: no pipeline run to show yet."
            )
            return view
        try:
            raw = _local_runs(home, limit, timeout)
        except XibError as err:
            view["note"] = str(err)
            return view
    view["runs"] = _run_rows(raw)
    view["scheduled"] = raw["scheduled"]
    if not view["runs"]:
        view["note"] = "Prefect has no started flow run yet."
    return view


def _local_runs(home: Path, limit: int, timeout: float) -> dict[str, Any]:
    """Read a local Prefect database through Prefect's temporary API, in a child process so its
    server and settings do not leak into this one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    args = [sys.executable, "-m", "xib.dashboard", "--local-prefect", str(limit), str(timeout)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise XibError(f"Prefect's local database at {home} could not be read: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _local_prefect_main(limit: int, timeout: float) -> None:
    from prefect.client.orchestration import get_client

    api = str(get_client(sync_client=True).api_url)  # starts the temporary API on this PREFECT_HOME
    print(json.dumps(fetch_flow_runs(api, limit, timeout)))


# --- data versions -----------------------------------------------------------------------------


def collect_data_versions(cfg: XibConfig, root: Path) -> dict[str, Any]:
    """dvc.lock's output hashes per stage, the stage driver's records, and the world manifests' hashes."""
    import yaml

    view: dict[str, Any] = {"lock": [], "records": [], "manifests": [], "lock_file": ""}
    lock_file = root / "dvc.lock"
    if lock_file.is_file():
        view["lock_file"] = str(lock_file)
        stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {})
        for stage, body in stages.items():
            for out in body.get("outs", []) or []:
                view["lock"].append(
                    {
                        "stage": stage,
                        "path": out["path"],
                        "md5": str(out.get("md5", "")),
                        "size": int(out.get("size") or 0),
                        "files": out.get("nfiles", ""),
                    }
                )
    records = root / ".cache" / "stages"
    for record in sorted(records.glob("*.json")) if records.is_dir() else []:
        body = json.loads(record.read_text())
        stamp = dt.datetime.fromtimestamp(record.stat().st_mtime, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        view["records"].append(
            {"stage": body.get("stage", record.stem), "key": body.get("key", ""), "done": stamp}
        )
    world = Path(cfg.paths.data) / "world"
    for manifest in sorted(world.glob("*/*/manifest.parquet")) if world.is_dir() else []:
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        view["manifests"].append(
            {
                "modality": manifest.parent.parent.name,
                "split": manifest.parent.name,
                "sha256": digest,
                "bytes": manifest.stat().st_size,
            }
        )
    if view["manifests"]:
        combined = hashlib.sha256("".join(m["sha256"] for m in view["manifests"]).encode()).hexdigest()
        view["world_hash"] = combined
    return view


# --- the page ----------------------------------------------------------------------------------


def render(
    registry: Mapping[str, Any],
    runs: Mapping[str, Any],
    data: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> str:
    from jinja2 import Environment, StrictUndefined
    from markupsafe import Markup

    from xib.dashboard_template import TEMPLATE
    from xib.dashboard_training import plotted, training_svg

    training = training or {"modalities": [], "note": "Training was not collected."}
    evaluation = evaluation or {"metrics": {}, "discrn": [], "plots": [], "note": "No evaluation collected."}
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x: f"{x:.4g}" if isinstance(x, int | float) else ""
    env.filters["seconds"] = lambda s: f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"
    env.tests["plotted"] = plotted
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return env.from_string(TEMPLATE).render(
        registry=registry,
        runs=runs,
        data=data,
        training=training,
        evaluation=evaluation,
        plot=Markup(metrics_svg(registry)),  # noqa: S704 - matplotlib's own SVG
        training_plot=Markup(training_svg(training)),  # noqa: S704 - matplotlib's own SVG
        generated=generated,
    )


def write_dashboard(cfg: XibConfig, output: str | os.PathLike[str] | None = None) -> Path:
    """Collect everything and write the page atomically; returns its path."""
    from xib.dashboard_training import collect_eval, collect_rows, collect_training
    from xib.io import write_bytes

    root = Path(cfg.paths.root).resolve()
    data = {**collect_data_versions(cfg, root), "rows": collect_rows(cfg)}
    page = render(
        collect_registry(cfg), collect_runs(cfg, root), data, collect_training(cfg), collect_eval(cfg)
    )
    path = Path(output or cfg.infra.dashboard.output)
    write_bytes(path, page.encode())
    return path


def serve(path: Path, host: str, port: int) -> None:
    """Serve the page's folder on host:port until interrupted."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(path.parent))
    with ThreadingHTTPServer((host, port), handler) as server:
        print(
            f"serving {path} at http://{host}:{server.server_address[1]}/{path.name} (Ctrl-C stops)",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--local-prefect"]:
        _local_prefect_main(int(sys.argv[2]), float(sys.argv[3]))
