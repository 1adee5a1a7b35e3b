"""Manifests: one Parquet table per modality and split, the index of every media item.

The columns are the contract of docs/ARCHITECTURE.md; `write_manifest` coerces a DataFrame to
`MANIFEST_SCHEMA` (missing nullable metadata columns become nulls) and writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xib.errors import DataError
from xib.hashing import sha256_bytes as sha256  # noqa: F401 - the manifest checksum, imported from here
from xib.io import atomic_path

if TYPE_CHECKING:
    from xib.config import XibConfig

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("checksum", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sample_rate", pa.int32()),
        pa.field("duration_s", pa.float32()),
        pa.field("frames", pa.int32()),
        pa.field("points", pa.int32()),
        # what ingest converted ("resample 44100 -> 16000 Hz; downmix 2 -> 1 channel"), "" when nothing
        pa.field("conversion", pa.string()),
        # the source medium's true values measured from its data, as JSON ({"sample_rate": 44100, ...})
        pa.field("source_meta", pa.string()),
    ]
)
COLUMNS = tuple(MANIFEST_SCHEMA.names)
REQUIRED_COLUMNS = ("id", "entity_id", "modality", "uri", "split")
METADATA_COLUMNS = ("width", "height", "sample_rate", "duration_s", "frames", "points")
STRING_DEFAULTS = {
    "kind": "",
    "caption": "",
    "source": "",
    "checksum": "",
    "conversion": "",
    "source_meta": "",
}
# added later: a manifest written before them is still read (they come back empty)
OPTIONAL_COLUMNS = ("conversion", "source_meta")
MANIFEST_NAME = "manifest.parquet"


def manifest_path(cfg: XibConfig, modality: str, split: str) -> Path:
    """`<paths.data>/world/<modality>/<split>/manifest.parquet` (world and ingest alike)."""
    return Path(cfg.paths.data) / "world" / modality / split / MANIFEST_NAME


def find_manifests(data_dir: str | os.PathLike[str]) -> list[Path]:
    """Every manifest under `<data>/world` (sorted: modality, then split)."""
    root = Path(data_dir) / "world"
    return sorted(root.glob(f"*/*/{MANIFEST_NAME}")) if root.is_dir() else []


def to_table(df: pd.DataFrame, file: str | os.PathLike[str] = "<manifest>") -> pa.Table:
    """A DataFrame as a MANIFEST_SCHEMA table; missing required columns raise DataError."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(str(file), "manifest has every required column", detail=f"missing {missing}")
    df = df.copy()
    for name, default in STRING_DEFAULTS.items():
        if name not in df.columns:
            df[name] = default
    for name in METADATA_COLUMNS:
        if name not in df.columns:
            df[name] = None
    df = df[list(COLUMNS)]
    try:
        return pa.Table.from_pandas(df, schema=MANIFEST_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise DataError(str(file), "manifest columns have the schema's types", detail=str(err)) from None


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    table = to_table(df, path)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_manifest(path: str | os.PathLike[str], strict: bool = False) -> pd.DataFrame:
    """Read a manifest into pandas (nullable ints stay `Int32`, strings stay strings).

    `strict=False` returns the file's own columns, so validation can name what is missing or wrong;
    `strict=True` additionally casts to MANIFEST_SCHEMA and raises DataError if it cannot.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "manifest file exists")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(str(path), "manifest is a readable Parquet file", detail=str(err)) from None
    for name in OPTIONAL_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.array([""] * table.num_rows, pa.string()))
    if strict:
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise DataError(str(path), "manifest has every schema column", detail=f"missing {missing}")
        try:
            table = table.select(list(COLUMNS)).cast(MANIFEST_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
            raise DataError(str(path), "manifest columns have the schema's types", detail=str(err)) from None
    try:
        # the column types come from Arrow alone, not from the pandas metadata of whoever wrote the file
        return table.to_pandas(types_mapper=_pandas_type, ignore_metadata=True)
    except (pa.ArrowInvalid, ValueError) as err:
        raise DataError(str(path), "manifest columns convert to pandas", detail=str(err)) from None


def _pandas_type(arrow_type: pa.DataType) -> Any:
    if pa.types.is_integer(arrow_type):
        return pd.Int32Dtype() if arrow_type.bit_width <= 32 else pd.Int64Dtype()
    return None
