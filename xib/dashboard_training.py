"""The dashboard's training and evaluation views (xib/dashboard.py renders them).

Reads, never writes: the alignment runs in MLflow (the newest run per modality, its loss history
and final losses), the last evaluation's `metrics.json` and plots, the gate's floors, and the row
counts of every data split. DisCRn is grouped by whatever pairs the metrics hold (`discrn/<pair>`,
`discrn/<pair>/<m>_first`, `discrn/<pair>/logits[/<m>_first]`): no pair is assumed.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from xib.config import XibConfig

DISCRN_RE = re.compile(r"^discrn/(?P<pair>[^/]+)(?:/(?P<rest>.+))?$")
CURVES = ("train/loss", "val/loss")


def mlflow_ui(cfg: XibConfig) -> str:
    """Base URL of the MLflow UI for links: infra.dashboard.mlflow_ui, else an http(s) tracking URI
    (user info removed); "" when there is none (a sqlite store: run `mlflow ui` to browse it)."""
    base = str(cfg.infra.dashboard.mlflow_ui or "") or cfg.infra.mlflow_tracking_uri
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https"):
        return ""
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def run_link(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}" if ui and run_id else ""


def version_link(ui: str, model: str, version: str) -> str:
    return f"{ui}/#/models/{model}/versions/{version}" if ui else ""


def collect_training(cfg: XibConfig) -> dict[str, Any]:
    """The newest alignment run of every modality: status, loss curves, final losses, link."""
    from xib.mlflow_store import sqlite_path

    uri = cfg.infra.mlflow_tracking_uri
    view: dict[str, Any] = {"modalities": [], "note": None}
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        view["note"] = f"No MLflow store yet at {db}: no alignment run to show (`xib align`)."
        return view
    from mlflow.exceptions import MlflowException

    from xib.mlflow_store import use_tracking_uri

    ui = mlflow_ui(cfg)
    try:
        client = use_tracking_uri(uri).MlflowClient()
        experiment = client.get_experiment_by_name(cfg.infra.mlflow_experiment)
        runs = (
            client.search_runs(
                [experiment.experiment_id],
                filter_string="tags.`xib.stage` = 'align'",
                order_by=["attributes.start_time DESC"],
                max_results=500,
            )
            if experiment is not None
            else []
        )
        newest: dict[str, Any] = {}
        for run in runs:
            newest.setdefault(run.data.tags.get("xib.modality", "?"), run)
        for modality, run in sorted(newest.items()):
            curves = {
                key: sorted((m.step, float(m.value)) for m in client.get_metric_history(run.info.run_id, key))
                for key in CURVES
            }
            view["modalities"].append(
                {
                    "modality": modality,
                    "run_id": run.info.run_id,
                    "status": run.info.status,
                    "link": run_link(ui, run.info.experiment_id, run.info.run_id),
                    # a run that died before its end has no final/loss: its last logged one
                    "final_loss": run.data.metrics.get(
                        "final/loss", curves["train/loss"][-1][1] if curves["train/loss"] else None
                    ),
                    "final_val_loss": curves["val/loss"][-1][1] if curves["val/loss"] else None,
                    "steps": max((s for series in curves.values() for s, _ in series), default=0),
                    "curves": curves,
                }
            )
    except (MlflowException, OSError) as err:
        view["note"] = f"The MLflow store at {uri} could not be read: {err}"
        return view
    if not view["modalities"]:
        view["note"] = "No alignment run in MLflow yet (`xib align modality=<m>`)."
    return view


def plotted(series: list[tuple[int, float]]) -> bool:
    """A curve is drawn only from two points on; a single point is shown as a number instead."""
    return len(series) >= 2


def training_svg(training: Mapping[str, Any]) -> str:
    """Training and validation loss against the step, one panel per modality with a curve."""
    panels = [m for m in training["modalities"] if any(plotted(s) for s in m["curves"].values())]
    if not panels:
        return ""
    import matplotlib
    from matplotlib.figure import Figure

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(4.4 * cols, 2.8 * rows), layout="constrained")
        for i, m in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            for key, colour in zip(CURVES, ("#0969da", "#bc4c00")):
                series = m["curves"][key]
                if plotted(series):
                    ax.plot(*zip(*series), label=key, color=colour, marker="o" if key == "val/loss" else None)
            ax.set_title(f"align {m['modality']}")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            ax.legend()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def floor_of(metric: str, floors: Mapping[str, float]) -> float | None:
    """The gate's floor for a metric: its own entry, else the first pattern that matches it."""
    if metric in floors:
        return float(floors[metric])
    return next((float(v) for k, v in floors.items() if fnmatchcase(metric, k)), None)


def discrn_groups(metrics: Mapping[str, float], floors: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per pair: a row per scoring (generate, logits) with the overall accuracy and one column per
    input order, each cell with its floor; plus the share answered and chance."""
    pairs: dict[str, dict[str, dict[str, str]]] = {}
    for name in metrics:
        match = DISCRN_RE.match(name)
        if not match:
            continue
        rest = match["rest"] or ""
        if rest == "answered":
            continue
        scoring, _, column = rest.partition("/") if rest.startswith("logits") else ("generate", "", rest)
        pairs.setdefault(match["pair"], {}).setdefault(scoring, {})[column or "all"] = name
    groups = []
    for pair, scorings in sorted(pairs.items()):
        orders = sorted({c for cols in scorings.values() for c in cols if c != "all"})
        rows = []
        for scoring in sorted(scorings, key=lambda s: (s != "generate", s)):
            cells = {}
            for column in ["all", *orders]:
                metric = scorings[scoring].get(column)
                if metric is None:
                    continue
                floor = floor_of(metric, floors)
                value = float(metrics[metric])
                cells[column] = {"metric": metric, "value": value, "floor": floor,
                                 "below": floor is not None and value < floor}  # fmt: skip
            rows.append({"scoring": scoring, "cells": cells})
        groups.append(
            {
                "pair": pair,
                "orders": orders,
                "rows": rows,
                "answered": metrics.get(f"discrn/{pair}/answered"),
                "chance": metrics.get(f"chance/{pair}"),
            }
        )
    return groups


def collect_eval(cfg: XibConfig) -> dict[str, Any]:
    """The last evaluation (`cfg.eval.output`): its metrics, DisCRn by pair and order against the
    gate's floors, and its plots inlined (the page stays self-contained)."""
    out = Path(cfg.eval.output)
    floors = {str(k): float(v) for k, v in cfg.gate.floors.items()}
    view: dict[str, Any] = {"folder": str(out), "metrics": {}, "discrn": [], "plots": [], "note": None}
    metrics_file = out / "metrics.json"
    if not metrics_file.is_file():
        view["note"] = f"No evaluation yet: {metrics_file} does not exist (`xib eval`)."
        return view
    metrics = {k: float(v) for k, v in json.loads(metrics_file.read_text()).items()}
    view["metrics"] = {k: {"value": v, "floor": floor_of(k, floors)} for k, v in sorted(metrics.items())}
    view["discrn"] = discrn_groups(metrics, floors)
    for png in sorted((out / "plots").glob("*.png")) if (out / "plots").is_dir() else []:
        data = base64.b64encode(png.read_bytes()).decode()
        view["plots"].append({"name": png.stem, "src": f"data:image/png;base64,{data}"})
    return view


def collect_rows(cfg: XibConfig) -> list[dict[str, Any]]:
    """Rows per data split: world manifests, instruction records, DisCRn items."""
    data = Path(cfg.paths.data)
    rows: list[dict[str, Any]] = []
    world = data / "world"
    for manifest in sorted(world.glob("*/*/manifest.parquet")) if world.is_dir() else []:
        rows.append(_row("world manifest", manifest.parent.parent.name, manifest.parent.name, manifest))
    instruct = data / "instruct"
    for jsonl in sorted(instruct.glob("*/*.jsonl")) if instruct.is_dir() else []:
        rows.append(_row("instructions", jsonl.parent.name, jsonl.stem, jsonl))
    discrn = data / "discrn"
    for items in sorted(discrn.glob("*/*.json")) if discrn.is_dir() else []:
        rows.append(_row("DisCRn", items.parent.name, items.stem, items))
    return rows


def _row(kind: str, group: str, split: str, path: Path) -> dict[str, Any]:
    return {"kind": kind, "group": group, "split": split, "rows": _count(path), "path": str(path)}


def _count(path: Path) -> int | None:
    """Rows of a parquet file (from its footer), a JSONL file (non-empty lines) or a JSON list."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.read_metadata(path).num_rows)
        if path.suffix == ".jsonl":
            with path.open() as handle:
                return sum(1 for line in handle if line.strip())
        body = json.loads(path.read_text())
        return len(body if isinstance(body, list) else body.get("items", []))
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: shown as such, not as 0
