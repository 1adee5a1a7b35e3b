"""Test environment: quiet, offline, and every run under its own temporary XIB_ROOT."""

from __future__ import annotations

import hashlib
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")  # a server per test file: no flow runs of another file in its listings
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """`prefect server start` on loopback with its own PREFECT_HOME and, as infra/compose.yaml runs it in
    production, a PostgreSQL database of its own (dropped afterwards); yields the env to reach it."""
    import signal
    import subprocess
    import sys

    from ops_services import fresh_database

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    with fresh_database() as db_uri, open(home / "server.log", "w") as log:
        env = dict(
            os.environ,
            PREFECT_HOME=str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_API_DATABASE_CONNECTION_URL=db_uri.replace("postgresql://", "postgresql+asyncpg://", 1),
        )
        env.pop("PREFECT_API_URL", None)
        prefect = str(Path(sys.executable).with_name("prefect"))
        server = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            wait_http(f"{api}/health", timeout=90)
            yield dict(env, PREFECT_API_URL=api)
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path (to compare two trees byte for byte)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
