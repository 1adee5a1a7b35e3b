"""Reading released PyTorch checkpoints (LAVIS, BEATs, ULIP) without running pickled code.

`torch.load(weights_only=True)` unpickles tensors, containers and plain values only; a checkpoint
that stores any other object (a class instance, a function) is refused with the name of what it
wanted to build, instead of executing it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from xib.errors import XibError


def read_torch_checkpoint(file: str | Path) -> Any:
    """The object in a `torch.save` file, tensors on CPU; refuses pickled objects (weights_only)."""
    import torch

    file = Path(file)
    if not file.is_file():
        raise XibError(f"{file}: no such checkpoint file")
    try:
        return torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next(
            (line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line),
            first[0] if first else "",
        )
        raise XibError(
            f"{file}: refused: it stores a pickled object, not only tensors and plain values ({detail})"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise XibError(f"{file}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from exc
