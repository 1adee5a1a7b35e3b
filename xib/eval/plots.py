"""Evaluation plots (PNG): per-modality benchmarks, DisCRn confusion by question type, baselines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_modality(metrics: Mapping[str, float], path: Path) -> Path | None:
    """Grouped bars: caption CIDEr, QA accuracy and classification accuracy per modality."""
    series = {
        "caption CIDEr": "caption/{m}/cider",
        "QA accuracy": "qa/{m}/accuracy",
        "classify accuracy": "classify/{m}/accuracy",
    }
    modalities = sorted(
        {k.split("/")[1] for k in metrics if k.split("/")[0] in {"caption", "qa", "classify"}}
    )
    if not modalities:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(modalities), 3.6))
    width = 0.8 / len(series)
    for j, (label, pattern) in enumerate(series.items()):
        values = [metrics.get(pattern.format(m=m), 0.0) for m in modalities]
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(modalities))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(modalities)), modalities)
    ax.set_title("single-modality benchmarks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid(plt: Any, panels: int, width: float, height: float, columns: int = 3) -> tuple[Any, list[Any]]:
    """One panel per pair, at most `columns` a row (six pairs: two rows of three); spare axes hidden."""
    cols = min(panels, columns)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def discrn_confusion(details: Mapping[str, Any], pairs: list[str], path: Path) -> Path | None:
    """Per pair, a heatmap of question attribute x (truth -> prediction) for generated answers."""
    found = [p for p in pairs if f"discrn/{p}" in details]
    if not found:
        return None
    plt = _pyplot()
    cols = ["first->first", "first->second", "first->none", "second->first", "second->second", "second->none"]
    fig, axes = _grid(plt, len(found), 6.2, 3.8)
    for ax, pair in zip(axes, found):
        confusion = details[f"discrn/{pair}"]["confusion"]
        rows = sorted(confusion)
        grid = [[confusion[r].get(c, 0) for c in cols] for r in rows]
        ax.imshow(grid, cmap="Blues", aspect="auto")
        top = max((v for row in grid for v in row), default=0)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                colour = "white" if top and value > top / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(len(cols)), [c.replace("->", "\n->") for c in cols], fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(f"DisCRn {pair}: truth -> answer by question type", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def baselines(metrics: Mapping[str, float], pairs: list[str], path: Path) -> Path | None:
    """Per pair: the model (generated and logits) beside oracle/predicted captions, hybrids and chance."""
    found = [p for p in pairs if any(k.endswith(f"/{p}") or f"/{p}/" in k for k in metrics)]
    if not found:
        return None
    plt = _pyplot()
    fig, axes = _grid(plt, len(found), 5.5, 3.8)
    for ax, pair in zip(axes, found):
        entries = {
            "model": metrics.get(f"discrn/{pair}"),
            "model (logits)": metrics.get(f"discrn/{pair}/logits"),
            "oracle caption": metrics.get(f"baseline/oracle_caption/{pair}"),
            "predicted caption": metrics.get(f"baseline/predicted_caption/{pair}"),
        }
        for key in sorted(k for k in metrics if k.startswith(f"hybrid/{pair}/")):
            entries["hybrid " + key.rsplit("/", 1)[1].replace("_as_text", " text")] = metrics[key]
        entries["chance"] = metrics.get(f"chance/{pair}")
        entries = {k: v for k, v in entries.items() if v is not None}
        bars = ax.bar(range(len(entries)), list(entries.values()), color="tab:blue")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(entries)), list(entries), rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"DisCRn {pair}: accuracy", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(
    metrics: Mapping[str, float], details: Mapping[str, Any], pairs: list[str], folder: Path
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        per_modality(metrics, folder / "per_modality.png"),
        discrn_confusion(details, pairs, folder / "discrn_confusion.png"),
        baselines(metrics, pairs, folder / "baselines.png"),
    ]
    return [p for p in made if p is not None]
