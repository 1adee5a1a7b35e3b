"""Checkpoints are loaded only if this job wrote them: a signed manifest in the completion marker.

The marker lists every file of a tag with its size and sha256, and carries an HMAC-SHA256 over
the whole marker with the key in `XIB_CHECKPOINT_KEY` (a cluster secret every node of the job
shares; see docs/TRAINING.md). Resume verifies the marker before DeepSpeed opens a single file:
- torn (no marker, a file missing or of another size): not loadable, skipped for an older tag;
- tampered (a file whose bytes changed, a file the marker does not list, a signature that does not
  match the key, an unsigned marker where a key is set, a signed one where none is): refused with
  an `XibError` naming the tag, and nothing is loaded.
Without a key (local runs), markers carry the sha256 manifest unsigned: it catches corrupted or
swapped files, not a forger who rewrites the marker too; a warning says so once per process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEY_ENV = "XIB_CHECKPOINT_KEY"
SIGNATURE = "signature"  # "hmac-sha256:<hex>", or "" in an unsigned marker
_warned = False


class Tampered(Exception):
    """A checkpoint whose files or signature do not match its marker (the message says which)."""


def key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def _warn_unsigned() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "%s is not set: checkpoints carry a sha256 manifest but no signature; "
            "set it (a secret shared by the job's nodes) to load only checkpoints this job wrote",
            KEY_ENV,
        )


def _payload(marker: dict[str, Any]) -> bytes:
    body = {k: v for k, v in marker.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def manifest(tag_dir: Path, exclude: str) -> dict[str, dict[str, Any]]:
    """{relative name: {"size", "sha256"}} of every file under `tag_dir` but `exclude` (the marker)."""
    from xib.hashing import sha256_file

    return {
        str(p.relative_to(tag_dir)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(Path(tag_dir).rglob("*"))
        if p.is_file() and p.name != exclude
    }


def sign(marker: dict[str, Any]) -> dict[str, Any]:
    """The marker with its signature (an empty one, and a warning, when no key is set)."""
    secret = key()
    if secret is None:
        _warn_unsigned()
        return {**marker, SIGNATURE: ""}
    digest = hmac.new(secret, _payload(marker), hashlib.sha256).hexdigest()
    return {**marker, SIGNATURE: f"hmac-sha256:{digest}"}


def verify_signature(marker: dict[str, Any]) -> None:
    """Raise Tampered unless the marker's signature matches this process's key."""
    secret, signature = key(), str(marker.get(SIGNATURE, ""))
    if secret is None:
        if signature:
            raise Tampered(f"the marker is signed but {KEY_ENV} is not set here, so it cannot be verified")
        _warn_unsigned()
        return
    if not signature:
        raise Tampered(f"the marker is not signed, and {KEY_ENV} is set (written without the job's key)")
    expected = "hmac-sha256:" + hmac.new(secret, _payload(marker), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        raise Tampered(f"the marker's signature does not match {KEY_ENV} (not written by this job)")


def verify_files(tag_dir: Path, files: dict[str, Any], exclude: str) -> str | None:
    """None when the files are those the marker lists; a reason when the tag is torn (missing or
    truncated files); raises Tampered when a file's bytes changed or an unlisted file appeared."""
    from xib.hashing import sha256_file

    for name, entry in files.items():
        if not isinstance(entry, dict) or "sha256" not in entry:
            return "its marker has no sha256 manifest (written by an older xib): retrained, not loaded"
        path = Path(tag_dir) / name
        if not path.is_file():
            return f"file {name} is missing"
        if path.stat().st_size != int(entry["size"]):
            return f"file {name} is {path.stat().st_size} bytes, expected {entry['size']} (truncated?)"
    for name, entry in files.items():
        if sha256_file(Path(tag_dir) / name) != entry["sha256"]:
            raise Tampered(f"file {name} does not match its sha256 in the marker")
    extra = sorted(
        str(p.relative_to(tag_dir))
        for p in Path(tag_dir).rglob("*")
        if p.is_file() and p.name != exclude and str(p.relative_to(tag_dir)) not in files
    )
    if extra:
        raise Tampered(f"file {extra[0]} is not in the marker")
    return None
