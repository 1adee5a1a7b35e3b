"""`xib validate`: every manifest under data/world, its table and every medium it points to.

Stages, each stopping at the first failure with one DataError line naming the manifest, row and rule:
  1. schema   each manifest has the MANIFEST_SCHEMA columns with compatible types; captions are UTF-8
  2. table    a Great Expectations suite per modality (nulls, unique ids, splits, value ranges, ...)
  3. entities every entity_id sits in one split only, across all modalities (no split leak)
  4. media    each row's bytes: present, size limit, sha256 matches, the shared media rules
              (xib/data/rules.py: format by content, header limits, full decode), and the decoded
              medium agrees with ValidateConfig and with the row's own metadata
The report `data/reports/validate.json` (+ `.html`) is written atomically on success and on failure.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xib.data import media
from xib.data.expectations import (
    FOLDER_MODALITY,
    FOLDER_SPLIT,
    common_spec,
    make_context,
    metadata_spec,
    run_suite,
)
from xib.data.manifest import (
    COLUMNS,
    MANIFEST_SCHEMA,
    OPTIONAL_COLUMNS,
    find_manifests,
    read_manifest,
    sha256,
)
from xib.data.rules import check_media
from xib.data.shards import iter_items
from xib.data.text import is_control, quoted
from xib.errors import DataError
from xib.io import atomic_path, write_json

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.data.config import LimitsConfig, ValidateConfig

REPORT_NAME = "validate.json"
_DURATION_TOLERANCE_S = 0.05  # container rounding of durations (frame/sample counts are exact)


class RowError(Exception):
    """A medium broke a rule; validation adds the manifest file and row."""

    def __init__(self, rule: str, detail: str = "") -> None:
        super().__init__(rule)
        self.rule, self.detail = rule, detail


# ------------------------------------------------------------------------------------------ schema
def _compatible(expected: pa.DataType, actual: pa.DataType, column: str) -> bool:
    if pa.types.is_null(actual):
        return True
    if pa.types.is_string(expected):
        text = pa.types.is_string(actual) or pa.types.is_large_string(actual)
        # binary captions are let through so the row check can name the row that is not UTF-8
        return text or (
            column == "caption" and (pa.types.is_binary(actual) or pa.types.is_large_binary(actual))
        )
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    return actual == expected


def load_checked(path: Path) -> pd.DataFrame:
    """Read one manifest, checking columns, types and caption encoding (stage 1)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(str(path), "manifest is a readable Parquet file", detail=str(err)) from None
    for field in MANIFEST_SCHEMA:
        if field.name not in schema.names and field.name in OPTIONAL_COLUMNS:
            continue  # a manifest written before the column existed
        if field.name not in schema.names:
            raise DataError(str(path), f"manifest has column {field.name!r}")
        actual = schema.field(field.name).type
        if not _compatible(field.type, actual, field.name):
            raise DataError(
                str(path), f"column {field.name!r} has type {field.type}", detail=f"found {actual}"
            )
    df = read_manifest(path)[list(COLUMNS)].reset_index(drop=True)
    captions = []
    for row, caption in enumerate(df["caption"]):
        if isinstance(caption, bytes | bytearray):
            try:
                caption = bytes(caption).decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(str(path), "caption is valid UTF-8 text", row=row, detail=str(err)) from None
        if isinstance(caption, str) and any(is_control(ch) for ch in caption):
            raise DataError(
                str(path),
                "caption holds no control characters (C0, C1, ANSI escapes)",
                row=row,
                detail=quoted(caption),
            )
        captions.append(caption)
    df["caption"] = pd.Series(captions, dtype=object).where(df["caption"].notna(), None)
    for column in ("width", "height", "sample_rate", "frames", "points"):
        df[column] = df[column].astype("Int64")
    df["duration_s"] = df["duration_s"].astype("float64")
    return df


# ------------------------------------------------------------------------------------------- table
def _table(by_modality: dict[str, list[tuple[Path, pd.DataFrame]]]) -> pd.DataFrame:
    """All manifest rows in one frame, with the folder they came from (`_file`, `_row`, folder columns)."""
    parts = []
    for modality, frames in by_modality.items():
        for path, df in frames:
            part = df.copy()
            part[FOLDER_SPLIT], part[FOLDER_MODALITY] = path.parent.name, modality
            part["_file"], part["_row"] = str(path), np.arange(len(df))
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _run_checked(table: pd.DataFrame, name: str, specs: list[Any], context: Any) -> list[dict[str, Any]]:
    """Run one GX suite over `table`; the first failing rule (in spec order) becomes a DataError."""
    results = run_suite(table.drop(columns=["_file", "_row"]), name, specs, context)
    for res in results:
        if res["success"]:
            continue
        if res["error"]:
            raise DataError(
                str(table["_file"].iloc[0]), res["rule"], detail=f"could not evaluate: {res['error']}"
            )
        bad = res["unexpected_index"]
        if not bad:
            raise DataError(
                str(table["_file"].iloc[0]), res["rule"], detail=f"{res['unexpected_count']} rows"
            )
        unique = res["expectation"] == "expect_column_values_to_be_unique"
        hit = table.loc[bad[1] if unique and len(bad) > 1 else bad[0]]
        detail = f"id={hit['id']!r}"
        column = res["column"]
        if column and column in table.columns and column != "id":
            detail += f", {column}={hit[column]!r}"
        if unique:
            first = table.loc[bad[0]]
            detail += f", also at {first['_file']} row {first['_row']}"
        raise DataError(hit["_file"], res["rule"], row=int(hit["_row"]), detail=detail)
    return [
        {"suite": name, **{k: r[k] for k in ("rule", "expectation", "column", "success", "unexpected_count")}}
        for r in results
    ]


def _check_entities(frames: Iterable[tuple[Path, pd.DataFrame]]) -> None:
    """No entity in two splits, across every manifest (stage 3)."""
    first_seen: dict[str, tuple[str, Path, int]] = {}
    for path, df in frames:
        for row, (entity, split) in enumerate(zip(df["entity_id"], df["split"])):
            seen = first_seen.setdefault(str(entity), (str(split), path, row))
            if seen[0] != str(split):
                raise DataError(
                    str(path),
                    "each entity_id is in one split only (no split leak)",
                    row=row,
                    detail=f"entity {entity!r} is {split!r} here and {seen[0]!r} at {seen[1]} row {seen[2]}",
                )


# ------------------------------------------------------------------------------------------- media
def _agrees(column: str, manifest_value: Any, actual: float, tolerance: float = 0.0) -> None:
    if manifest_value is None or pd.isna(manifest_value):
        return
    if abs(float(manifest_value) - actual) > tolerance:
        raise RowError(
            f"manifest {column} matches the medium", f"manifest says {manifest_value}, medium has {actual:g}"
        )


def check_medium(
    modality: str,
    row: pd.Series,
    data: bytes,
    vcfg: ValidateConfig,
    limits: LimitsConfig,
    decoded: tuple[np.ndarray, dict[str, Any]] | None = None,
) -> None:
    """Every rule one stored medium must satisfy; raises RowError naming the first one broken.

    The media rules themselves (format by content, limits from headers, full decode) are the shared
    ones of `xib.data.rules.check_media`; on top, the stored medium must match ValidateConfig (the
    data set's rate, point count, sizes) and the row's own metadata. `decoded`: what `check_media`
    already returned for exactly these bytes (ingest storing a source file unchanged).
    """
    if len(data) > vcfg.max_media_bytes:
        raise RowError(f"media file is at most {vcfg.max_media_bytes} bytes", f"{len(data)} bytes")
    if len(data) == 0:
        raise RowError("media file is not empty")
    if vcfg.check_checksum and sha256(data) != str(row["checksum"]):
        raise RowError(
            "checksum matches the media bytes (sha256)", f"manifest {str(row['checksum'])[:12]}..."
        )
    if modality not in media.MODALITIES:
        raise RowError(f"modality is one of {media.MODALITIES}", repr(modality))
    try:
        array, info = decoded if decoded is not None else check_media(modality, data, limits)
    except DataError as err:
        raise RowError(err.rule, err.detail) from None
    if modality == "image":
        _check_image(row, array, info, vcfg)
    elif modality == "audio":
        _check_audio(row, array, info, vcfg)
    elif modality == "pc":
        _check_pc(row, array, info, vcfg)
    else:
        _check_video(row, array, info, vcfg)


def _check_image(row: pd.Series, image: np.ndarray, info: dict[str, Any], vcfg: ValidateConfig) -> None:
    if info["mode"] != "RGB":
        raise RowError("image has 3 channels (RGB)", f"mode {info['mode']}")
    height, width = image.shape[:2]
    lo, hi = vcfg.min_image_side, vcfg.max_image_side
    if not (lo <= height <= hi and lo <= width <= hi):
        raise RowError(f"image sides are between {lo} and {hi}", f"{width}x{height}")
    _agrees("width", row["width"], width)
    _agrees("height", row["height"], height)


def _check_audio(row: pd.Series, samples: np.ndarray, info: dict[str, Any], vcfg: ValidateConfig) -> None:
    rate = int(info["sample_rate"])
    if vcfg.sample_rate and rate != vcfg.sample_rate:
        raise RowError(f"audio sample rate is {vcfg.sample_rate} Hz", f"{rate} Hz")
    seconds = len(samples) / rate if rate else 0.0
    lo, hi = vcfg.min_audio_seconds, vcfg.max_audio_seconds
    if not lo <= seconds <= hi:
        raise RowError(f"audio lasts {lo}..{hi} s", f"{seconds:.3f} s")
    _agrees("sample_rate", row["sample_rate"], rate)
    _agrees("duration_s", row["duration_s"], seconds, _DURATION_TOLERANCE_S)


def _check_pc(row: pd.Series, points: np.ndarray, info: dict[str, Any], vcfg: ValidateConfig) -> None:
    if info["columns"] != 3:
        raise RowError("point cloud has shape [N, 3]", f"{info['columns']} columns")
    limit = vcfg.max_abs_coordinate
    if points.size and float(np.abs(points).max()) > limit:
        raise RowError(
            f"point coordinates lie within +-{limit:g}", f"max |x| {float(np.abs(points).max()):.3g}"
        )
    want = vcfg.points
    if (want and len(points) != want) or len(points) == 0:
        raise RowError(f"point cloud has {want or 'at least 1'} points", f"{len(points)} points")
    _agrees("points", row["points"], len(points))


def _check_video(row: pd.Series, frames: np.ndarray, info: dict[str, Any], vcfg: ValidateConfig) -> None:
    count, height, width = frames.shape[:3]
    fps = float(info["fps"])
    lo, hi = vcfg.min_frames, vcfg.max_frames
    if not lo <= count <= hi:
        raise RowError(f"video has {lo}..{hi} frames", f"{count} frames")
    side = vcfg.max_video_side
    if height > side or width > side:
        raise RowError(f"video sides are at most {side}", f"{width}x{height}")
    seconds = count / fps if fps else 0.0
    lo_s, hi_s = vcfg.min_video_seconds, vcfg.max_video_seconds
    if not lo_s <= seconds <= hi_s:
        raise RowError(f"video lasts {lo_s}..{hi_s} s", f"{seconds:.3f} s at {fps:g} fps")
    _agrees("frames", row["frames"], count)
    _agrees("width", row["width"], width)
    _agrees("height", row["height"], height)
    _agrees("duration_s", row["duration_s"], seconds, _DURATION_TOLERANCE_S)


def _check_media(path: Path, df: pd.DataFrame, modality: str, cfg: XibConfig, progress: Any) -> int:
    vcfg, limits = cfg.data.validate, cfg.data.limits
    endpoint = cfg.infra.s3_endpoint_url or None
    checked = 0
    try:
        for row, data in iter_items(df, path.parent, endpoint):
            try:
                check_medium(modality, row, data, vcfg, limits)
            except RowError as err:
                detail = f"id={row['id']!r}, uri={row['uri']!r}" + (f": {err.detail}" if err.detail else "")
                raise DataError(str(path), err.rule, row=int(row.name), detail=detail) from None
            checked += 1
            progress.update(1)
    except DataError as err:
        if err.file == str(path):
            raise
        raise DataError(
            str(path), err.rule, row=err.row, detail=f"{err.file}" + (f": {err.detail}" if err.detail else "")
        ) from None
    return checked


# ------------------------------------------------------------------------------------------ report
def _write_report(report_dir: Path, report: dict[str, Any], html_too: bool) -> Path:
    path = report_dir / REPORT_NAME
    write_json(path, report)
    if html_too:
        with atomic_path(path.with_suffix(".html")) as tmp:
            tmp.write_text(_html(report), encoding="utf-8")
    return path


def _html(report: dict[str, Any]) -> str:
    status = "passed" if report["ok"] else "FAILED"
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{v['items']}</td><td>{v['seconds']}</td><td>{v['items_per_s']}</td></tr>"
        for m, v in report["modalities"].items()
    )
    checks = "".join(
        f"<tr><td>{html.escape(e['suite'])}</td><td>{html.escape(e['rule'])}</td>"
        f"<td>{'ok' if e['success'] else 'FAILED'}</td><td>{e['unexpected_count']}</td></tr>"
        for e in report["expectations"]
    )
    error = f"<p><b>{html.escape(report['error'])}</b></p>" if report["error"] else ""
    return (
        "<!doctype html><meta charset='utf-8'><title>xib validate</title>"
        f"<h1>Validation {status}</h1>{error}"
        "<h2>Media</h2><table border=1><tr><th>modality</th><th>items</th><th>seconds</th><th>items/s</th></tr>"
        f"{rows}</table><h2>Expectations</h2><table border=1><tr><th>suite</th><th>rule</th><th>result</th>"
        f"<th>unexpected</th></tr>{checks}</table>"
    )


# -------------------------------------------------------------------------------------------- main
def validate(cfg: XibConfig) -> dict[str, Any]:
    """Validate every manifest under `<paths.data>/world`; returns the report, raises DataError on the first bad row."""
    from tqdm import tqdm

    from xib.transient import apply_budgets

    apply_budgets(cfg.infra.retry)  # media may come from S3
    vcfg = cfg.data.validate
    data_dir = Path(cfg.paths.data)
    report: dict[str, Any] = {"ok": False, "error": "", "manifests": [], "modalities": {}, "expectations": []}
    started = time.perf_counter()
    try:
        paths = find_manifests(data_dir)
        if not paths:
            raise DataError(
                str(data_dir / "world"), "at least one manifest exists (run `xib world` or `xib ingest`)"
            )
        by_modality: dict[str, list[tuple[Path, pd.DataFrame]]] = {}
        for path in paths:
            modality = path.parent.parent.name
            if modality not in media.MODALITIES:
                raise DataError(str(path), f"manifest folder is one of {media.MODALITIES}", detail=modality)
            df = load_checked(path)
            by_modality.setdefault(modality, []).append((path, df))
            report["manifests"].append(
                {"file": str(path), "modality": modality, "split": path.parent.name, "rows": len(df)}
            )
        t0 = time.perf_counter()
        context = make_context()  # imports great_expectations (seconds): timed apart from the checks
        report["gx_startup_seconds"] = round(time.perf_counter() - t0, 4)
        table = _table(by_modality)
        t0 = time.perf_counter()
        report["expectations"] += _run_checked(table, "manifest_common", common_spec(vcfg), context)
        table_seconds = {"common": time.perf_counter() - t0}
        for modality in by_modality:
            t0 = time.perf_counter()
            rows = table[table[FOLDER_MODALITY] == modality]
            specs = metadata_spec(vcfg, modality)
            report["expectations"] += _run_checked(rows, f"metadata_{modality}", specs, context)
            table_seconds[modality] = time.perf_counter() - t0
        report["table_seconds"] = {k: round(v, 4) for k, v in table_seconds.items()}
        _check_entities(f for frames in by_modality.values() for f in frames)
        total = sum(len(df) for frames in by_modality.values() for _, df in frames)
        with tqdm(total=total, desc="validate media", unit="item", leave=False, disable=None) as progress:
            for modality, frames in by_modality.items():
                t0 = time.perf_counter()
                items = sum(_check_media(path, df, modality, cfg, progress) for path, df in frames)
                media_s = time.perf_counter() - t0
                # the common suite's time is shared out by row count
                share = table_seconds["common"] * items / max(total, 1)
                seconds = media_s + table_seconds[modality] + share
                report["modalities"][modality] = {
                    "items": items,
                    "manifests": len(frames),
                    "table_seconds": round(table_seconds[modality] + share, 4),
                    "media_seconds": round(media_s, 4),
                    "seconds": round(seconds, 4),
                    "items_per_s": round(items / seconds, 1) if seconds > 0 else math.inf,
                }
        report["ok"] = True
    except DataError as err:
        report["error"] = str(err)
        report["seconds"] = round(time.perf_counter() - started, 4)
        _write_report(data_dir / "reports", report, vcfg.html_report)
        raise
    report["items"] = sum(m["items"] for m in report["modalities"].values())
    report["seconds"] = round(time.perf_counter() - started, 4)
    report["report"] = str(_write_report(data_dir / "reports", report, vcfg.html_report))
    return report
