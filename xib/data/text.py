"""Caption rules and safe quoting of user input in messages.

A caption is trimmed and its inner whitespace (spaces, tabs, newlines) collapsed to one space; it is
refused when empty after that, when it holds a control character (C0 other than whitespace, DEL, C1:
this covers ANSI escape sequences, which start with ESC) or a lone surrogate, or when it is longer
than the limit. Bidirectional overrides/isolates/marks and zero-width characters are stripped and
counted (`invisible_chars: strip`), or refused (`refuse`).
"""

from __future__ import annotations

from typing import Any

from xib.errors import DataError

# bidi embeddings/overrides/isolates/marks, zero-width space/joiners, word joiner, BOM, soft hyphen
INVISIBLE = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
)
_WHITESPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c")


def is_control(ch: str) -> bool:
    code = ord(ch)
    return (code < 0x20 and ch not in _WHITESPACE_CONTROLS) or 0x7F <= code <= 0x9F


def quoted(value: Any, limit: int = 80) -> str:
    """`value` as a quoted, single-line, escaped string: no raw control or invisible character survives."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "'" or ch == "\\":
            out.append("\\" + ch)
        elif code < 0x20 or 0x7F <= code <= 0x9F or ch in INVISIBLE or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def clean_caption(
    value: Any, file: str, row: int | str | None, max_chars: int, invisible: str = "strip"
) -> tuple[str, int]:
    """(caption, number of invisible characters stripped) or DataError naming the rule."""
    if not isinstance(value, str):
        raise DataError(file, "caption is a string", row=row, detail=type(value).__name__)
    bad = next((ch for ch in value if is_control(ch)), None)
    if bad is not None:
        raise DataError(
            file,
            "caption holds no control characters (C0, C1, ANSI escapes)",
            row=row,
            detail=f"U+{ord(bad):04X} in {quoted(value)}",
        )
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise DataError(
            file, "caption is valid Unicode text (no lone surrogates)", row=row, detail=quoted(value)
        )
    stripped = sum(1 for ch in value if ch in INVISIBLE)
    if stripped:
        if invisible == "refuse":
            raise DataError(
                file,
                "caption holds no bidirectional or zero-width characters",
                row=row,
                detail=quoted(value),
            )
        value = "".join(ch for ch in value if ch not in INVISIBLE)
    text = " ".join(value.split())
    if not text:
        raise DataError(file, "caption is not empty after trimming", row=row)
    if len(text) > max_chars:
        raise DataError(file, f"caption has at most {max_chars} characters", row=row, detail=f"{len(text)}")
    return text, stripped
