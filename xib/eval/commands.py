"""`xib` commands of the eval room: `eval`, `ablate` and `seeds`."""

from __future__ import annotations

from xib.commands import command
from xib.config import load_config


@command("eval")
def eval_command(overrides: list[str]) -> int:
    """Evaluate the trained projections: benchmarks, DisCRn, baselines -> artifacts/eval/."""
    import logging

    from rich.console import Console
    from rich.table import Table

    from xib.eval.run import run_eval

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(overrides)
    metrics = run_eval(cfg)
    table = Table(title=f"xib eval ({cfg.eval.split})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        table.add_row(name, f"{value:.4f}")
    Console().print(table)
    return 0


@command("seeds")
def seeds_command(overrides: list[str]) -> int:
    """The whole pipeline on every seed of eval.seeds, default beside paper-faithful; resumable."""
    import logging

    from xib.pipeline.seeds import run_seeds

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(overrides)
    report = run_seeds(cfg, overrides)
    print(f"wrote {report}")
    return 0


@command("ablate")
def ablate_command(overrides: list[str]) -> int:
    """Train and evaluate the ablation variants (eval.ablate.variants); table + plot in benchmarks/."""
    from xib.eval.ablate import run_ablations

    cfg = load_config(overrides)
    report = run_ablations(cfg, overrides)
    print(f"wrote {report}")
    return 0
