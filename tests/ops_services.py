"""Real services on loopback for the operations tests: a fresh PostgreSQL database, an MLflow tracking
server on it, and a gateway in front of the server that can answer 503 or 403 (a load balancer
whose backend is down, or a proxy refusing the caller) or forward, counting every request."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, wait_http

PG = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A database of its own on the local PostgreSQL (trust auth), dropped afterwards."""
    import psycopg2

    name = f"xib_opsa_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def mlflow_server(db_uri: str, artifacts: Path) -> Iterator[str]:
    """`mlflow server --workers 1` on a free loopback port, backend store `db_uri`; yields its URL."""
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    log = open(artifacts.parent / "mlflow-server.log", "w")  # noqa: SIM115 - open for the server's life
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db_uri,
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


class Gateway:
    """An HTTP gateway on loopback in front of `backend`: mode "forward", "503" or "403".

    `forward_after=n` answers 503 to the first n requests, then forwards: the server "comes back".
    """

    def __init__(self, backend: str, mode: str = "forward", forward_after: int | None = None) -> None:
        self.backend = backend.removeprefix("http://")
        self.mode, self.forward_after = mode, forward_after
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.lock = threading.Lock()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gateway.lock:
                    mode = gateway.mode
                    if gateway.forward_after is not None and len(gateway.requests) >= gateway.forward_after:
                        mode = "forward"
                    index = len(gateway.requests)
                    gateway.requests.append((self.command, self.path, 0))
                if mode in ("503", "403"):
                    status, data, headers = int(mode), b"gateway says no", {"Content-Type": "text/plain"}
                else:
                    conn = http.client.HTTPConnection(gateway.backend, timeout=60)
                    fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=fwd)
                    response = conn.getresponse()
                    status, data = response.status, response.read()
                    headers = {
                        k: v for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }  # fmt: skip
                    conn.close()
                with gateway.lock:
                    gateway.requests[index] = (self.command, self.path, status)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def statuses(self) -> list[int]:
        with self.lock:
            return [status for _, _, status in self.requests]
