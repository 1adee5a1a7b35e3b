"""Transient or permanent: real failures from MLflow, S3 (botocore) and DVC against a dead loopback
port are transient, also inside xib's own wrappers; bad data, a full disk and HTTP 4xx are not.
The command boundary turns either into one line and exit 75 or 1."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from xib.errors import DataError, TransientError, XibError
from xib.transient import exit_status, is_transient, service

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dead_url(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


def _raised(call) -> BaseException:
    try:
        call()
    except BaseException as err:  # noqa: BLE001 - the test inspects whatever was raised
        return err
    raise AssertionError("expected a failure")


def test_service_failures_are_transient(dead_url: str, tmp_path: Path) -> None:
    import boto3
    import botocore.exceptions
    from mlflow import MlflowClient

    from xib.data import shards

    mlflow_err = _raised(lambda: MlflowClient(tracking_uri=dead_url).search_experiments())
    s3 = boto3.client("s3", endpoint_url=dead_url, region_name="us-east-1")
    s3_err = _raised(lambda: s3.get_object(Bucket="b", Key="k"))
    shards._s3_client.cache_clear()
    wrapped = _raised(lambda: shards._read_s3("s3://b/k.png", dead_url))  # DataError raised `from None`
    assert isinstance(wrapped, DataError) and "media object exists in S3" in str(wrapped)
    for err in (mlflow_err, s3_err, wrapped, ConnectionRefusedError(), TimeoutError()):
        assert is_transient(err), repr(err)

    status = {"ResponseMetadata": {"HTTPStatusCode": 503}, "Error": {"Code": "SlowDown", "Message": "x"}}
    missing = {"ResponseMetadata": {"HTTPStatusCode": 404}, "Error": {"Code": "NoSuchKey", "Message": "x"}}
    assert is_transient(botocore.exceptions.ClientError(status, "GetObject"))
    assert not is_transient(botocore.exceptions.ClientError(missing, "GetObject"))


def test_dvc_remote_unreachable_is_transient(dead_url: str, tmp_path: Path) -> None:
    """A real `dvc push` of a tracked file to an S3 remote whose endpoint refuses connections."""
    from dvc.repo import Repo

    from xib.data.versioning import _dvc_repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "data.txt").write_text("x")
    with Repo(str(tmp_path)) as repo:
        with repo.config.edit() as conf:
            conf["remote"]["r"] = {"url": "s3://bucket/dvc", "endpointurl": dead_url}
        repo.add(str(tmp_path / "data.txt"))

    def push() -> None:
        with _dvc_repo(tmp_path, "push") as repo:
            repo.push(remote="r")

    assert is_transient(_raised(push))


def test_permanent_failures_are_not_transient() -> None:
    from mlflow.exceptions import MlflowException, RestException

    for err in (
        XibError("bad config"),
        DataError("m.parquet", "id is unique", row=3),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EROFS, "Read-only file system"),
        MlflowException("API request to endpoint /x failed with error code 403 != 200"),
        RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}),
        ValueError("a bug"),
    ):
        assert not is_transient(err), repr(err)
    assert is_transient(MlflowException("API request to endpoint /x failed with error code 503 != 200"))
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "later"}))


def test_one_line_and_exit_status(dead_url: str, tmp_path: Path, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    url = dead_url.replace("http://", "http://user:hunter2@")
    with pytest.raises(TransientError) as caught:
        with service("MLflow tracking", url, "1 request"):
            MlflowClient(tracking_uri=dead_url).search_experiments()
    message = str(caught.value)
    assert message.startswith(f"MLflow tracking at {dead_url} is unavailable (") and message.endswith(
        "tried 1 request"
    )
    assert "hunter2" not in message and "\n" not in message

    failure = tmp_path / "cause.txt"
    monkeypatch.setenv("XIB_FAILURE_FILE", str(failure))
    assert exit_status("gate", caught.value) == 75
    assert exit_status("eval", XibError(f"{tmp_path}: not writable")) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"xib gate: {message}", f"xib eval: {tmp_path}: not writable"]
    assert failure.read_text().strip() == f"xib eval: {tmp_path}: not writable"
    with pytest.raises(ValueError):  # a bug keeps its traceback
        exit_status("x", ValueError("bug"))


def test_a_child_command_exits_75_on_an_unreachable_registry(dead_url: str, tmp_path: Path) -> None:
    import os

    done = subprocess.run(
        [sys.executable, "-m", "xib.cli", "rollback", f"infra.mlflow_tracking_uri={dead_url}",
         "infra.retry.tracking_max_retries=0"],
        cwd=REPO, env=dict(os.environ, XIB_ROOT=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 75, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"xib rollback: MLflow registry at {dead_url} is unavailable"
    )


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung S3 gateway)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_stalled_s3_endpoint_fails_transiently_under_the_configured_timeout(
    stalled_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a read timeout botocore waits 60 s per attempt; `infra.retry` bounds it."""
    import botocore.exceptions

    from xib.config import RetryConfig
    from xib.data import shards
    from xib.transient import S3_CONNECT_TIMEOUT_ENV, S3_READ_TIMEOUT_ENV, apply_budgets, s3_client_config

    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", S3_CONNECT_TIMEOUT_ENV, S3_READ_TIMEOUT_ENV):
        monkeypatch.setenv(name, "")  # restored after the test; apply_budgets writes them
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "")
    for name in ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    apply_budgets(
        RetryConfig(storage_max_attempts=1, storage_connect_timeout_s=1.0, storage_read_timeout_s=1.0)
    )
    config = s3_client_config()
    assert (config.connect_timeout, config.read_timeout) == (1.0, 1.0)

    shards._s3_client.cache_clear()
    try:
        err = _raised(lambda: shards._read_s3("s3://bucket/key.png", stalled_url))
    finally:
        shards._s3_client.cache_clear()
    assert isinstance(err, DataError) and is_transient(err)
    chain, cause = [], err.__context__
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(isinstance(c, botocore.exceptions.ReadTimeoutError) for c in chain), chain


def test_the_dvc_s3_remote_gets_the_storage_timeouts(tmp_path: Path) -> None:
    from dvc.repo import Repo

    from xib.config import load_config
    from xib.data.versioning import configure_remote

    cfg = load_config(
        [
            f"paths.root={tmp_path}",
            "infra.dvc_remote=s3",
            "infra.dvc_remote_url=s3://xib-data/dvc",
            "infra.retry.storage_connect_timeout_s=2.5",
            "infra.retry.storage_read_timeout_s=7",
        ]
    )
    name = configure_remote(cfg)
    with Repo(str(tmp_path)) as repo:  # DVC's own schema validates what was written
        remote = repo.config["remote"][name]
    assert (remote["connect_timeout"], remote["read_timeout"]) == (3, 7)
