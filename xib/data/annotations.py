"""Annotation files read strictly: every problem is one DataError naming the file, row and rule.

JSON: UTF-8, nesting depth bounded (checked before parsing), duplicate keys refused, integers within
+-`max_json_integer`, no NaN/Infinity. CSV: parsed by record (a quoted field may hold newlines); rows
are numbered by the 1-based line on which the record starts, so an editor finds them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xib.data.text import quoted
from xib.errors import DataError

if TYPE_CHECKING:
    from xib.data.config import LimitsConfig

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def read_text(path: Path, max_bytes: int) -> str:
    """A UTF-8 annotation file (a leading BOM is dropped), size-checked before it is read."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(file, f"annotation file is at most {max_bytes} bytes", detail=f"{size} bytes")
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(
            file, "annotation file is readable", detail=err.strerror or type(err).__name__
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            file, "annotation file is valid UTF-8", row=line, detail=f"byte {err.start}"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def json_depth(text: str) -> int:
    """Deepest nesting of objects/arrays, strings ignored (vectorised: COCO files are ~100 MB)."""
    brackets = "".join(_BRACKETS.findall(_JSON_STRING.sub("", text)))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def loads_strict(text: str, file: str, max_depth: int, max_integer: int) -> Any:
    depth = json_depth(text)
    if depth > max_depth:
        raise DataError(file, f"JSON nests at most {max_depth} levels", detail=f"{depth} levels")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Refused(f"JSON objects have no duplicate keys (key {quoted(key)})")
            out[key] = value
        return out

    def integer(token: str) -> int:
        digits = token.lstrip("-")
        if len(digits) > len(str(max_integer)) or int(token) > max_integer or int(token) < -max_integer:
            raise _Refused(f"JSON integers lie within +-{max_integer} ({quoted(token, 24)})")
        return int(token)

    def constant(token: str) -> Any:
        raise _Refused(f"JSON holds no NaN or Infinity ({token})")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_int=integer, parse_constant=constant)
    except _Refused as err:
        raise DataError(file, str(err)) from None
    except json.JSONDecodeError as err:
        raise DataError(file, "annotation file is valid JSON", row=err.lineno, detail=err.msg) from None
    except (RecursionError, ValueError) as err:
        raise DataError(file, "annotation file is valid JSON", detail=type(err).__name__) from None


class _Refused(ValueError):
    """A strict-JSON rule broken inside the parser's hooks."""


def load_json(path: Path, limits: LimitsConfig) -> Any:
    text = read_text(path, limits.max_annotation_bytes)
    return loads_strict(text, str(path), limits.max_json_depth, limits.max_json_integer)


def csv_records(text: str, file: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line the record starts on, fields) for every non-empty record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(file, "CSV records are well formed", row=line, detail=str(err)) from None
        start, line = line, reader.line_num + 1
        if values and any(v.strip() for v in values):
            yield start, values


def read_csv(path: Path, limits: LimitsConfig) -> list[tuple[int, list[str]]]:
    text = read_text(path, limits.max_annotation_bytes)
    if "\x00" in text:
        row = text[: text.index("\x00")].count("\n") + 1
        raise DataError(str(path), "CSV holds no NUL bytes", row=row)
    return list(csv_records(text, str(path)))


def header_index(
    records: list[tuple[int, list[str]]], required: tuple[str, ...], file: str
) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """The header's column positions and the data records; a repeated header line is refused."""
    if not records:
        raise DataError(file, f"CSV has a header with {','.join(required)}")
    header = [c.strip() for c in records[0][1]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            file, f"CSV has columns {','.join(required)}", row=records[0][0], detail=f"missing {missing}"
        )
    body = records[1:]
    for line, values in body:
        if [v.strip() for v in values] == header:
            raise DataError(file, "the header line appears once", row=line, detail="repeated header")
        if len(values) != len(header):
            raise DataError(file, f"row has {len(header)} fields", row=line, detail=f"got {len(values)}")
    return {name: i for i, name in enumerate(header)}, body
