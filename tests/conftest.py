"""Test environment: quiet, offline, and every run under its own temporary XIB_ROOT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault(
    "TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parents[1] / ".cache/torch_extensions")
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def xib_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root for data and artifacts."""
    monkeypatch.setenv("XIB_ROOT", str(tmp_path))
    return tmp_path
