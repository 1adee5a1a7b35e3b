"""`xib ablate`: the paper's ablations and the anchoring recipe, trained and evaluated side by side.

Each variant of `eval.ablate.variants` is a list of overrides on the embedded default (Q-Former vs
linear, cue vs no cue, views joined vs apart, caption-anchored vs not, the paper-faithful recipe). A variant trains every modality's projection with the same
frozen parts and feature caches as the main pipeline (linked, not recomputed) under
`eval.ablate.workdir/<variant>/`, then runs the full evaluation there. The report is a Markdown
table and a bar plot (`benchmarks/ablations.md`, `benchmarks/ablations.png`) with the command that
made them. A variant that fails to train is reported as failed; the others still run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.io import atomic_path, write_json

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

SHARED = ("bootstrap", "features")  # frozen parts and their cached outputs: the same for every variant
COLUMNS = (
    "caption/image/exact_match",
    "caption/pc/exact_match",
    "caption/audio/exact_match",
    "caption/video/exact_match",
    "qa/image/accuracy",
    "classify/pc/accuracy",
    "discrn/image_pc",
    "discrn/image_pc/logits",
    "discrn/audio_video",
    "discrn/audio_video/logits",
    "baseline/oracle_caption/image_pc",
    "baseline/oracle_caption/audio_video",
    # the four pairs the paper does not test
    "discrn/image_audio",
    "discrn/image_video",
    "discrn/pc_audio",
    "discrn/pc_video",
)


def _variant_root(cfg: XibConfig, name: str) -> Path:
    main = Path(cfg.paths.artifacts).resolve()
    root = Path(cfg.eval.ablate.workdir).resolve() / name
    root.mkdir(parents=True, exist_ok=True)
    for sub in SHARED:
        link = root / sub
        if not (main / sub).exists():
            raise XibError(
                f"{main / sub}: missing; run the pipeline up to `xib features` before `xib ablate`"
            )
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(main / sub, target_is_directory=True)
    return root


def run_variant(
    cfg_overrides: list[str], name: str, variant: list[str], modalities: list[str]
) -> dict[str, Any]:
    from xib.config import load_config
    from xib.eval.run import run_eval
    from xib.train.launch import run_alignment

    base = load_config(cfg_overrides)
    root = _variant_root(base, name)
    overrides = [*cfg_overrides, *variant, f"paths.artifacts={root}", "eval.mlflow_run_id="]
    start = time.perf_counter()
    for modality in modalities:
        extra = ["modality.init_from=image"] if modality == "video" and "image" in modalities else []
        cfg = load_config([*overrides, f"modality={modality}", *extra])
        status = run_alignment(cfg, modality)
        if status != 0:
            return {"status": f"align {modality} failed (exit {status})", "metrics": {}}
    cfg = load_config([*overrides, f"eval.modalities=[{','.join(modalities)}]"])
    metrics = run_eval(cfg)
    return {"status": "ok", "metrics": metrics, "seconds": time.perf_counter() - start}


def run_ablations(cfg: XibConfig, cfg_overrides: list[str]) -> Path:
    variants = {k: list(v) for k, v in cfg.eval.ablate.variants.items()}
    if not variants:
        raise XibError("eval.ablate.variants is empty")
    modalities = list(cfg.eval.ablate.modalities)
    results: dict[str, dict[str, Any]] = {}
    for name, variant in variants.items():
        log.info("ablation %s: %s", name, variant)
        results[name] = run_variant(cfg_overrides, name, variant, modalities)
    report = Path(cfg.eval.ablate.report)
    write_json(Path(cfg.eval.ablate.workdir) / "results.json", {"variants": variants, "results": results})
    plot = _plot(results, report.with_suffix(".png"))
    command = "xib ablate " + " ".join(cfg_overrides)
    with atomic_path(report) as tmp:
        tmp.write_text(markdown(variants, results, command.strip(), plot.name if plot else None))
    return report


def markdown(
    variants: dict[str, list[str]], results: dict[str, dict[str, Any]], command: str, plot: str | None
) -> str:
    present = [c for c in COLUMNS if any(c in r.get("metrics", {}) for r in results.values())]
    lines = [
        "# Ablations",
        "",
        f"Made by `{command}` (variants: `eval.ablate.variants` in conf/eval/default.yaml).",
        "Each variant trains every projection with the same frozen LLM, encoders and feature caches, then",
        "runs the full evaluation; DisCRn is zero-shot in every variant.",
        "",
        "| variant | overrides | status | " + " | ".join(present) + " |",
        "|---|---|---|" + "---:|" * len(present),
    ]
    for name, result in results.items():
        values = [f"{result['metrics'][c]:.3f}" if c in result.get("metrics", {}) else "-" for c in present]
        overrides = f"`{' '.join(variants[name])}`" if variants[name] else "(none)"
        lines.append(f"| {name} | {overrides} | {result['status']} | " + " | ".join(values) + " |")
    if plot:
        lines += ["", f"![ablations]({plot})"]
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    keys = [k for k in ("discrn/image_pc", "discrn/audio_video", "discrn/image_pc/logits", "discrn/audio_video/logits")
            if any(k in r.get("metrics", {}) for r in results.values())]  # fmt: skip
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2 + 1.8 * len(results), 3.8))
    width = 0.8 / len(keys)
    names = list(results)
    for j, key in enumerate(keys):
        values = [results[n].get("metrics", {}).get(key, 0.0) for n in names]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=key)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("DisCRn accuracy by ablation (zero-shot)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
