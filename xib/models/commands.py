"""`xib` commands of the models room."""

from __future__ import annotations

import json
import sys

from xib.commands import command
from xib.config import load_config
from xib.train import determinism


@command("bootstrap")
def bootstrap(overrides: list[str]) -> int:
    """Make the embedded default's frozen parts: the demo LLM, then the demo encoders."""
    from xib.models.bootstrap_llm import bootstrap_llm

    cfg = load_config(overrides)
    determinism.apply(cfg, cfg.model.encoder_pretrain.threads)
    report = bootstrap_llm(cfg)
    ceiling = report.get("ceiling") or {}
    print(
        json.dumps(
            {
                "llm": report["source"],
                "ceiling_min": ceiling.get("min"),
                "meets_target": ceiling.get("meets_target"),
            }
        )
    )
    from xib.models.encoder_pretrain import pretrain_encoders

    pretrain_encoders(cfg)
    return 0


@command("corpus")
def corpus(overrides: list[str]) -> int:
    """Write the demo LLM's pre-training text, data/world/corpus.txt (`xib world` writes it too)."""
    from xib.data.corpus import write_corpus

    print(write_corpus(load_config(overrides)))
    return 0


@command("ship-llm")
def ship_llm(overrides: list[str]) -> int:
    """Copy the demo LLM `xib bootstrap` built into the repository (bootstrap.llm.shipped_dir)."""
    from xib.models.bootstrap_llm import ship_llm as ship

    print(ship(load_config(overrides)), file=sys.stderr)
    return 0
