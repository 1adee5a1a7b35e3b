"""`xib seeds`: the whole default pipeline on several seeds, beside the paper-faithful recipe.

For each seed of `eval.seeds.seeds`, the keys of `eval.seeds.seed_keys` are set to it: the
top-level `seed` (data order, projection initialisation, feature and training sampling), the
encoders' pre-training seed and `data.world.train_seed` (the training items' renders). The test
and val splits (entities, items, renders, DisCRn and instruction files) do not move, so every seed
is scored on the same items. The frozen demo LLM is the shipped one for every seed (its corpus
does not depend on the seed).

Each seed gets its own project root, `eval.seeds.workdir/seed-<s>/<recipe>/`: the first recipe runs
every stage of dvc.yaml but the gate (world, validation, instruction and DisCRn data, bootstrap,
features, alignment, evaluation); the others link its data, frozen parts and feature caches and run
alignment and evaluation only. Stages run through `xib.stages.run_stage`, which skips a stage whose
inputs are unchanged since it finished, so an interrupted sweep resumes where it stopped. The
report (`eval.seeds.report`, Markdown, and `results.json` in the workdir) tables, per DisCRn pair
and input order, each recipe's mean, minimum and standard deviation over the seeds that finished,
and every seed's value. Never part of `make demo`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.io import atomic_path, write_json

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

SHARED = ("data", "artifacts/bootstrap", "artifacts/features")  # made once per seed, linked by recipes
PER_RECIPE = ("align", "align-video", "evaluate")  # stage names (before `@modality`) each recipe runs
SKIPPED = ("gate",)  # a sweep registers nothing


def seed_overrides(keys: Sequence[str], seed: int) -> list[str]:
    return [f"{key}={int(seed)}" for key in keys]


def recipe_root(workdir: Path, seed: int, recipe: str) -> Path:
    return workdir / f"seed-{int(seed)}" / recipe


def _link_shared(source: Path, target: Path) -> None:
    for sub in SHARED:
        link = target / sub
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to((source / sub).resolve(), target_is_directory=True)


def stages_for(first: bool) -> list[Any]:
    """The dvc.yaml stages a recipe runs, in file order: all but the gate, or only its own."""
    from xib.stages import load_stages

    chosen = []
    for name, stage in load_stages().items():
        base = name.split("@", 1)[0]
        if base in SKIPPED or (not first and base not in PER_RECIPE):
            continue
        chosen.append(stage)
    return chosen


def run_recipe(
    overrides: list[str], root: Path, first: bool, shared_from: Path | None = None, in_process: bool = False
) -> dict[str, Any]:
    """Run (or resume) one recipe of one seed under `root`; returns its status and metrics.

    Stages run as child `xib` processes (as the flows run them); `in_process` is for tests."""
    import json

    from xib.stages import run_stage

    root.mkdir(parents=True, exist_ok=True)
    if shared_from is not None:
        _link_shared(shared_from, root)
    args = [*overrides, f"paths.root={root}"]
    start = time.perf_counter()
    ran: list[str] = []
    for stage in stages_for(first):
        try:
            outcome = run_stage(stage, args, root, in_process=in_process)
        except XibError as err:
            return {"status": f"{stage.name} failed: {err}", "metrics": {}, "stages": ran}
        ran.append(f"{stage.name}:{outcome}")
        log.info("%s %s %s", root, stage.name, outcome)
    metrics = json.loads((root / "artifacts" / "eval" / "metrics.json").read_text())
    return {"status": "ok", "metrics": metrics, "stages": ran, "seconds": time.perf_counter() - start}


def adopt(source: Path, root: Path) -> dict[str, Any]:
    """A finished project root taken as one recipe's run: its metrics read, its data and caches linked."""
    import json

    metrics_file = source / "artifacts" / "eval" / "metrics.json"
    if not metrics_file.is_file():
        raise XibError(f"eval.seeds.adopt_first: {metrics_file} is missing (run the pipeline there first)")
    _link_shared(source, root)
    return {"status": "ok", "metrics": json.loads(metrics_file.read_text()), "adopted": str(source)}


def run_seeds(cfg: XibConfig, cfg_overrides: list[str], in_process: bool = False) -> Path:
    """Every seed x recipe of `cfg.eval.seeds` (resuming finished stages); write the report."""
    scfg = cfg.eval.seeds
    recipes = {name: list(extra) for name, extra in scfg.recipes.items()}
    seeds = [int(s) for s in scfg.seeds]
    if not recipes or not seeds:
        raise XibError("eval.seeds.seeds and eval.seeds.recipes must both be non-empty")
    workdir = Path(scfg.workdir).resolve()
    first_recipe = next(iter(recipes))
    results: dict[str, dict[str, Any]] = {name: {} for name in recipes}
    adopted = Path(scfg.adopt_first).resolve() if scfg.adopt_first else None
    for seed in seeds:
        shared = recipe_root(workdir, seed, first_recipe)
        for name, extra in recipes.items():
            first = name == first_recipe
            if first and adopted is not None and seed == seeds[0]:
                results[name][str(seed)] = adopt(adopted, shared)
            elif not first and results[first_recipe][str(seed)]["status"] != "ok":
                results[name][str(seed)] = {
                    "status": "not run: the seed's shared stages failed",
                    "metrics": {},
                }
            else:
                overrides = [*cfg_overrides, *seed_overrides(scfg.seed_keys, seed), *extra]
                log.info("seed %d, recipe %s: %s", seed, name, overrides)
                results[name][str(seed)] = run_recipe(
                    overrides, recipe_root(workdir, seed, name), first, None if first else shared, in_process
                )
            write_json(workdir / "results.json", {"recipes": recipes, "seeds": seeds, "results": results})
    report = Path(scfg.report)
    command = ("xib seeds " + " ".join(cfg_overrides)).strip()
    with atomic_path(report) as tmp:
        tmp.write_text(markdown(results, list(cfg.eval.discrn.pairs), seeds, recipes, command))
    return report


# --- the table ------------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, minimum and sample standard deviation (nan below two values)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "min": min(values), "std": std}


def rows_for(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """(label, metric) per pair: both orders, then each input first."""
    from xib.data.config import PAIRS

    out = []
    for pair in pairs:
        out.append((f"{pair}, both orders", f"discrn/{pair}"))
        for modality in PAIRS[pair]:
            out.append((f"{pair}, {modality} first", f"discrn/{pair}/{modality}_first"))
    return out


def markdown(
    results: dict[str, dict[str, Any]],
    pairs: Sequence[str],
    seeds: Sequence[int],
    recipes: dict[str, list[str]],
    command: str,
) -> str:
    names = list(results)
    lines = [
        "# DisCRn over seeds",
        "",
        f"Made by `{command}` (`eval.seeds` in conf/eval/default.yaml): the whole pipeline per seed,",
        "test split, every item; mean / min / std over the seeds that finished (std: sample, n-1).",
        "",
    ]
    for name in names:
        done = [s for s in seeds if results[name].get(str(s), {}).get("status") == "ok"]
        others = {
            s: results[name][str(s)]["status"] for s in seeds if str(s) in results[name] and s not in done
        }
        extra = f" `{' '.join(recipes[name])}`" if recipes[name] else " (no overrides)"
        adopted = {s: results[name][str(s)]["adopted"] for s in done if "adopted" in results[name][str(s)]}
        lines.append(
            f"- {name}{extra}: seeds finished {done or 'none'}"
            + (f"; taken from finished runs {adopted}" if adopted else "")
            + (f"; not finished {others}" if others else "")
        )
    header = "| DisCRn | " + " | ".join(f"{n} mean | {n} min | {n} std | {n} by seed" for n in names) + " |"
    lines += ["", header, "|---|" + "---:|---:|---:|---|" * len(names)]
    for label, metric in rows_for(pairs):
        cells = []
        for name in names:
            by_seed = {
                s: results[name][str(s)]["metrics"][metric]
                for s in seeds
                if metric in results[name].get(str(s), {}).get("metrics", {})
            }
            if not by_seed:
                cells.append("- | - | - | -")
                continue
            stats = summary(list(by_seed.values()))
            std = "-" if math.isnan(stats["std"]) else f"{stats['std']:.3f}"
            seeds_text = " / ".join(f"{s}: {v:.3f}" for s, v in by_seed.items())
            cells.append(f"{stats['mean']:.3f} | {stats['min']:.3f} | {std} | {seeds_text}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
