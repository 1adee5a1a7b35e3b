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


def save_config_and_weights(module: Any, config: Mapping[str, Any], directory: Any) -> None:
    """`config.json` and `model.safetensors` in `directory`: the folder layout xib's own backbones
    (PointBERT, BEATs) write and read back with `from_pretrained`."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
