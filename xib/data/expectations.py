"""Great Expectations suites for manifests, built from ValidateConfig: one `manifest_common` suite over
every manifest row at once, then one `metadata_<modality>` suite per modality.

Every expectation carries `meta.rule`, the sentence a user sees when it fails, and `meta.order`, so the
first failing rule in suite order is the one reported. great_expectations is imported lazily (3.5 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from xib.data.config import ValidateConfig

# helper columns validation adds to the rows it checks: the folder each manifest lives in
FOLDER_SPLIT = "_folder_split"
FOLDER_MODALITY = "_folder_modality"

Spec = tuple[str, dict[str, Any], str]  # (expectation class name, kwargs, rule)


def common_spec(vcfg: ValidateConfig) -> list[Spec]:
    """Rules for every manifest row, run once over all modalities together (ids unique across all)."""
    splits = [str(s) for s in vcfg.splits]
    specs: list[Spec] = []
    for column in ("id", "entity_id", "modality", "uri", "split", "caption", "checksum"):
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": column}, f"{column} is not null"))
    for column in ("id", "entity_id", "uri"):
        specs.append(
            (
                "ExpectColumnValueLengthsToBeBetween",
                {"column": column, "min_value": 1},
                f"{column} is not empty",
            )
        )
    return specs + [
        ("ExpectColumnValuesToBeUnique", {"column": "id"}, "id is unique"),
        (
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "modality", "column_B": FOLDER_MODALITY},
            "modality matches the manifest's folder",
        ),
        (
            "ExpectColumnValuesToBeInSet",
            {"column": "split", "value_set": splits},
            f"split is one of {splits}",
        ),
        (
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "split", "column_B": FOLDER_SPLIT},
            "split matches the manifest's folder",
        ),
        (
            "ExpectColumnValueLengthsToBeBetween",
            {
                "column": "caption",
                "min_value": vcfg.min_caption_chars,
                "max_value": vcfg.max_caption_chars,
            },
            f"caption has {vcfg.min_caption_chars}..{vcfg.max_caption_chars} characters",
        ),
        ("ExpectColumnValuesToMatchRegex", {"column": "caption", "regex": r"\S"}, "caption is not blank"),
        (
            "ExpectColumnValuesToMatchRegex",
            {"column": "checksum", "regex": r"^[0-9a-f]{64}$"},
            "checksum is a sha256 hex digest",
        ),
    ]


def metadata_spec(vcfg: ValidateConfig, modality: str) -> list[Spec]:
    """The modality's metadata columns: present and within ValidateConfig's ranges."""
    specs: list[Spec] = []

    def between(column: str, low: float | None, high: float | None, what: str) -> None:
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": column}, f"{column} is set for {modality}"))
        specs.append(
            ("ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high}, what)
        )

    if modality == "image":
        lo, hi = vcfg.min_image_side, vcfg.max_image_side
        between("width", lo, hi, f"width is between {lo} and {hi}")
        between("height", lo, hi, f"height is between {lo} and {hi}")
    elif modality == "video":
        hi = vcfg.max_video_side
        between("width", 2, hi, f"width is between 2 and {hi}")
        between("height", 2, hi, f"height is between 2 and {hi}")
        lo_f, hi_f = vcfg.min_frames, vcfg.max_frames
        between("frames", lo_f, hi_f, f"frames is between {lo_f} and {hi_f}")
        lo_s, hi_s = vcfg.min_video_seconds, vcfg.max_video_seconds
        between("duration_s", lo_s, hi_s, f"duration_s is between {lo_s} and {hi_s}")
    elif modality == "audio":
        rate = vcfg.sample_rate
        if rate:
            between("sample_rate", rate, rate, f"sample_rate is {rate}")
        else:
            between("sample_rate", 1, None, "sample_rate is positive")
        lo_s, hi_s = vcfg.min_audio_seconds, vcfg.max_audio_seconds
        between("duration_s", lo_s, hi_s, f"duration_s is between {lo_s} and {hi_s}")
    elif modality == "pc":
        points = vcfg.points
        if points:
            between("points", points, points, f"points is {points}")
        else:
            between("points", 1, None, "points is positive")
    return specs


def build_suite(name: str, specs: list[Spec]) -> Any:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for order, (cls, kwargs, rule) in enumerate(specs):
        suite.add_expectation(getattr(gx.expectations, cls)(**kwargs, meta={"rule": rule, "order": order}))
    return suite


def make_context() -> Any:
    """An ephemeral GX context (no files, no network) with progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def run_suite(df: pd.DataFrame, name: str, specs: list[Spec], context: Any = None) -> list[dict[str, Any]]:
    """Validate `df` against the suite `name` built from `specs`; one dict per expectation, in spec order.

    Each dict: rule, expectation, column, success, unexpected_count, unexpected_index (list of df index).
    """
    context = context or make_context()
    batch_definition = (
        context.data_sources.add_pandas(f"source_{name}")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all_rows")
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(build_suite(name, specs), result_format={"result_format": "COMPLETE"})
    rows = []
    for res in result.results:
        config = res.expectation_config
        details = res.result or {}
        raised = (res.exception_info or {}).get("raised_exception", False)
        rows.append(
            {
                "order": int(config.meta["order"]),
                "rule": config.meta["rule"],
                "expectation": config.type,
                "column": config.kwargs.get("column") or config.kwargs.get("column_A"),
                "success": bool(res.success) and not raised,
                "unexpected_count": int(details.get("unexpected_count") or 0),
                "unexpected_index": [int(i) for i in details.get("unexpected_index_list") or []],
                "error": str((res.exception_info or {}).get("exception_message") or "") if raised else "",
            }
        )
    return sorted(rows, key=lambda r: r["order"])
