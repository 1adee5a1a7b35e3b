"""The one check before a converted or released state dict is loaded into an xib module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xib.errors import XibError


def check_state_dict(own: Mapping[str, Any], given: Mapping[str, Any], where: str, source: str) -> None:
    """Refuse, in one line naming the keys, a state dict that does not fit `own` exactly: keys missing
    from `given`, keys with no place in `own`, or tensors of another shape."""
    missing, unknown = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    if missing or unknown:
        raise XibError(f"{where}: missing {source} keys {missing[:10]}; unknown keys {unknown[:10]}")
    wrong = [
        f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in own if given[k].shape != own[k].shape
    ]
    if wrong:
        raise XibError(f"{where}: shapes disagree: {'; '.join(wrong[:5])}")
