"""Test-only access to the X-InstructBLIP reference code (PyPI `ammico-lavis` 1.0.2.3, installed with
--no-deps by `make install`).

LAVIS's package `__init__` imports the whole library and dependencies not installed here, so single
modules are loaded by file path under bare `lavis.*` packages, with stubs for what they import but
never use on the path under test. The stubs and the shims for transformers 5 live here, never in
xib. Everything is undone on exit (sys.modules restored); the loaded classes keep working.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn


def lavis_dir() -> Path:
    spec = importlib.util.find_spec("lavis")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the reference (ammico-lavis) is not installed: run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() on it must not fail
    module.__dict__.update(attrs)
    return module


class _DropPath(nn.Module):  # timm's DropPath: identity at eval, which is all these tests run
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _no_call(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"reference stub {name} was called: the test path must not need it")

    return fail


def _common_stubs() -> dict[str, types.ModuleType]:
    """What the reference modules under test import but do not use on their eval path."""
    import torch.nn.init as init

    def to_2tuple(x: Any) -> tuple[Any, Any]:
        return x if isinstance(x, tuple) else (x, x)

    def trunc_normal_(
        tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
    ):
        return init.trunc_normal_(tensor, mean, std, a, b)

    timm_layers = _module(
        "timm.models.layers",
        DropPath=_DropPath,
        drop_path=lambda x, *a, **k: x,
        to_2tuple=to_2tuple,
        trunc_normal_=trunc_normal_,
    )
    return {
        # torchaudio has no build for this torch; the tests feed fbank features themselves
        "torchaudio": _module("torchaudio"),
        "torchaudio.compliance": _module("torchaudio.compliance"),
        "torchaudio.compliance.kaldi": _module("torchaudio.compliance.kaldi", fbank=_no_call("kaldi.fbank")),
        "timm": _module("timm"),
        "timm.models": _module("timm.models"),
        "timm.models.layers": timm_layers,
        "timm.models.registry": _module("timm.models.registry", register_model=lambda f: f),
        "lavis.common.dist_utils": _module(
            "lavis.common.dist_utils", download_cached_file=_no_call("download_cached_file")
        ),
    }


class _BareLavis:
    """Finds `lavis.*` in the installed reference: packages bare (their `__init__` imports all of
    LAVIS), modules by file path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "lavis" and not name.startswith("lavis."):
            return None
        where = self.root.joinpath(*name.split(".")[1:])
        if where.is_dir():
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(where)]
            return spec
        if where.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(name, where.with_suffix(".py"))
        return None


@contextlib.contextmanager
def reference() -> Iterator[Callable[[str], types.ModuleType]]:
    """Yields `load("lavis.models.beats.BEATs")`: the reference module of that name, loaded by path."""
    root = lavis_dir()
    saved = dict(sys.modules)
    finder = _BareLavis(root)
    sys.meta_path.insert(0, finder)
    try:
        for name, module in _common_stubs().items():
            sys.modules.setdefault(name, module)

        def load(name: str) -> types.ModuleType:
            return importlib.import_module(name)

        yield load
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        sys.modules.update(saved)


def qformer_shims() -> None:
    """What transformers 5 removed and LAVIS's Qformer.py (written for 4.x) imports (DESIGN.md)."""
    import transformers
    import transformers.modeling_utils as modeling_utils
    import transformers.pytorch_utils as pytorch_utils
    from transformers.utils import ModelOutput

    sys.modules.setdefault(
        "transformers.file_utils", _module("transformers.file_utils", ModelOutput=ModelOutput)
    )
    for name in ("apply_chunking_to_forward", "find_pruneable_heads_and_indices", "prune_linear_layer"):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(pytorch_utils, name, _no_call(name)))
    del transformers
