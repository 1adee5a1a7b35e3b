"""What a composed config must satisfy beyond its types: ranges, choices and rules across fields.

`check(cfg)` runs once, in `xib.config.load_config` (which re-exports `ConfigError` and `select`); the first broken rule is a `ConfigError` naming
the key, its value and the rule (`train.steps=-5: must be >= 1`), so the code downstream can trust the
config it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from xib.data.config import GENERATORS, PAIRS, SPLITS, TASKS
from xib.errors import XibError
from xib.modalities import MODALITIES
from xib.models.config import ENCODER_FAMILIES, LLM_DTYPES, PROJECTION_KINDS
from xib.train.config import DTYPES, FEATURE_DTYPES, LAUNCHERS, MIXES, ZERO_STAGES

if TYPE_CHECKING:
    from xib.config import XibConfig


class ConfigError(XibError):
    """A config or command line the user can fix (unknown key, bad value): one line, exit status 2."""


def select(cfg: XibConfig, key: str) -> Any:
    """The value at a dotted key (`data.world`, `seed`), through dataclass fields and tables."""
    node = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"must be >= {low:g}"


def _more_than(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v > low), f"must be > {low:g}"


def _between(low: float, high: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: low <= v <= high), f"must be between {low:g} and {high:g}"


def _one_of(choices: Iterable[Any]) -> tuple[Callable[[Any], bool], str]:
    allowed = tuple(choices)
    return (lambda v: v in allowed), "must be one of " + ", ".join(str(c) for c in allowed)


def _all_of(choices: Iterable[Any]) -> tuple[Callable[[Any], bool], str]:
    allowed = tuple(choices)
    return (lambda v: all(x in allowed for x in v)), "every entry must be one of " + ", ".join(
        str(c) for c in allowed
    )


# (dotted key, (test, what it requires)); a key missing from a config variant is not checked.
RULES: list[tuple[str, tuple[Callable[[Any], bool], str]]] = [
    ("modality.name", _one_of(MODALITIES)),
    ("modality.init_from", _one_of(("", *MODALITIES))),
    ("data.source", _one_of(("world", "ingest"))),
    ("data.world.items_per_modality", _at_least(1)),
    ("data.world.entities_per_kind", _at_least(1)),
    ("data.world.workers", _at_least(1)),
    ("data.validate.splits", _all_of(SPLITS)),
    ("data.ingest.on_missing", _one_of(("skip", "error"))),
    ("data.instruct.generator", _one_of(GENERATORS)),
    ("data.instruct.modalities", _all_of(MODALITIES)),
    ("data.instruct.splits", _all_of(SPLITS)),
    ("data.instruct.tasks", _all_of(TASKS)),
    ("data.discrn.pairs", _all_of(PAIRS)),
    ("data.discrn.source", _one_of(("world", "released"))),
    ("data.discrn.examples_per_pair", _at_least(1)),
    ("model.llm.dtype", _one_of(LLM_DTYPES)),
    ("model.projection.kind", _one_of(PROJECTION_KINDS)),
    ("model.projection.num_query_tokens", _at_least(1)),
    ("model.generation.max_new_tokens", _at_least(1)),
    ("model.generation.num_beams", _at_least(1)),
    ("train.steps", _at_least(1)),
    ("train.micro_batch_size", _at_least(1)),
    ("train.grad_accum", _at_least(1)),
    ("train.lr", _more_than(0)),
    ("train.min_lr_ratio", _between(0, 1)),
    ("train.warmup_steps", _at_least(0)),
    ("train.weight_decay", _at_least(0)),
    ("train.zero_stage", _one_of(ZERO_STAGES)),
    ("train.dtype", _one_of(DTYPES)),
    ("train.procs", _at_least(1)),
    ("train.launcher", _one_of(LAUNCHERS)),
    ("train.master_port", _between(0, 65535)),
    ("train.checkpoint_every", _at_least(1)),
    ("train.keep_checkpoints", _at_least(1)),
    ("train.eval_every", _at_least(0)),
    ("train.log_every", _at_least(1)),
    ("train.mix", _one_of(MIXES)),
    ("train.feature_dtype", _one_of(FEATURE_DTYPES)),
    ("train.anchor.weight", _at_least(0)),
    ("eval.split", _one_of(SPLITS)),
    ("eval.batch_size", _at_least(1)),
    ("eval.max_items_per_task", _at_least(0)),
    ("eval.modalities", _all_of(MODALITIES)),
    ("eval.tasks", _all_of(TASKS)),
    ("eval.discrn.pairs", _all_of(PAIRS)),
    ("gate.tolerance", _at_least(0)),
]


def _fail(key: str, value: Any, rule: str) -> None:
    raise ConfigError(f"{key}={value!r}: {rule}")


def check(cfg: XibConfig) -> None:
    """Raise `ConfigError` on the first rule `cfg` breaks."""
    for key, (test, rule) in RULES:
        value = select(cfg, key)
        if not test(value):
            _fail(key, value, rule)
    _check_tables(cfg)
    _check_stage_nice(cfg)
    _check_across_fields(cfg)


def _check_tables(cfg: XibConfig) -> None:
    """Per-modality tables name modalities, and their numbers obey the field they override."""
    tables: dict[str, tuple[Mapping[str, float], tuple[Callable[[Any], bool], str]]] = {
        "train.steps_by_modality": (cfg.train.steps_by_modality, _at_least(1)),
        "train.lr_by_modality": (cfg.train.lr_by_modality, _more_than(0)),
        "model.projection.num_query_tokens_by_modality": (
            cfg.model.projection.num_query_tokens_by_modality,
            _at_least(1),
        ),
        "train.anchor.weight_by_modality": (cfg.train.anchor.weight_by_modality, _at_least(0)),
        "model.encoder_pretrain.steps_by_modality": (
            cfg.model.encoder_pretrain.steps_by_modality,
            _at_least(1),
        ),
    }
    for key, (table, (test, rule)) in tables.items():
        for modality, value in table.items():
            if modality not in MODALITIES:
                _fail(f"{key}.{modality}", value, "names no modality; one of " + ", ".join(MODALITIES))
            if not test(value):
                _fail(f"{key}.{modality}", value, rule)
    for modality, encoder in cfg.model.encoders.items():
        if modality not in MODALITIES:
            _fail(
                f"model.encoders.{modality}", modality, "names no modality; one of " + ", ".join(MODALITIES)
            )
        if encoder.family not in ENCODER_FAMILIES:
            _fail(
                f"model.encoders.{modality}.family",
                encoder.family,
                "must be one of " + ", ".join(ENCODER_FAMILIES),
            )
        if encoder.views < 1:
            _fail(f"model.encoders.{modality}.views", encoder.views, "must be >= 1")


def _check_stage_nice(cfg: XibConfig) -> None:
    """`infra.stage_nice` values are nicenesses an unprivileged user may set (the stage names are
    checked against dvc.yaml by `xib.stages.stage_niceness`, a room above this one)."""
    for name, value in cfg.infra.stage_nice.items():
        if not 0 <= value <= 19:
            _fail(f"infra.stage_nice.{name}", value, "must be between 0 and 19")


def _check_across_fields(cfg: XibConfig) -> None:
    if cfg.modality.init_from == cfg.modality.name:
        _fail("modality.init_from", cfg.modality.init_from, "must name another modality than modality.name")
    fractions = cfg.data.world.splits
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        _fail("data.world.splits", fractions, "fractions must be >= 0 with a positive sum")
    projection = cfg.model.projection
    if projection.kind == "qformer" and projection.qformer_hidden % projection.qformer_heads:
        _fail(
            "model.projection.qformer_hidden",
            projection.qformer_hidden,
            f"must be a multiple of model.projection.qformer_heads ({projection.qformer_heads})",
        )
