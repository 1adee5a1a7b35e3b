"""Transient or permanent: which failures a retry can cure, and how each one is reported.

A failure is transient when a service did not answer or answered "not now": connection refused or
reset, a timeout, HTTP 5xx or 429 from the MLflow tracking server, S3 (botocore) or a DVC remote,
a database that is not up. Everything else (bad data, a refused gate, a bug, a full disk) is
permanent. Exceptions are classified by walking their cause/context chain, so a library's wrapper
(`DvcError`, `DataError` raised `from None`) still shows the network error inside it.

A stage that fails transiently exits with status 75 (EX_TEMPFAIL, sysexits.h) and one line naming
the service, its URL (credentials removed) and what was tried; the flows retry exactly those.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from xib.errors import EX_TEMPFAIL, TransientError, XibError
from xib.scrub import scrub_text

FAILURE_FILE_ENV = "XIB_FAILURE_FILE"  # a child stage writes its one-line cause here
S3_CONNECT_TIMEOUT_ENV = "XIB_S3_CONNECT_TIMEOUT_S"  # set by apply_budgets, inherited by child stages
S3_READ_TIMEOUT_ENV = "XIB_S3_READ_TIMEOUT_S"
_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}
_RETRYABLE_STATUS = re.compile(r"\b(?:error code|status(?: code)?|HTTP)\s*:?\s*(5\d\d|429)\b", re.I)
_S3_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "InternalError",
    "RequestLimitExceeded",
    "503",
    "500",
    "502",
    "504",
}
_DB_UNAVAILABLE = re.compile(
    r"could not connect|connection refused|server closed|terminating connection|timeout|timed out"
    r"|database is locked|the database system is (starting|shutting)",
    re.I,
)
_MLFLOW_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "INTERNAL_ERROR"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (wrappers raised `from None` keep __context__)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def _loaded(module: str, name: str) -> type | None:
    """A class from a library only when that library is already imported (classifying never imports)."""
    mod = sys.modules.get(module)
    found = getattr(mod, name, None) if mod is not None else None
    return found if isinstance(found, type) else None


def _is_instance(exc: BaseException, *names: tuple[str, str]) -> bool:
    return any((cls := _loaded(m, n)) is not None and isinstance(exc, cls) for m, n in names)


def _mlflow_transient(exc: BaseException) -> bool:
    if not _is_instance(exc, ("mlflow.exceptions", "MlflowException")):
        return False
    if _is_instance(exc, ("mlflow.exceptions", "RestException")):
        # an answer from the server: its error code says whether it is "not now"
        return str(getattr(exc, "error_code", "")) in _MLFLOW_TRANSIENT_CODES
    # raised by the client itself: "API request to ... failed with error code 503 != 200" or
    # "... failed with exception HTTPConnectionPool(...): Max retries exceeded"
    text = str(exc)
    return bool(_RETRYABLE_STATUS.search(text)) or (
        "API request to" in text and ("Max retries exceeded" in text or "timed out" in text.lower())
    )


def _botocore_transient(exc: BaseException) -> bool:
    if _is_instance(
        exc,
        ("botocore.exceptions", "EndpointConnectionError"),
        ("botocore.exceptions", "ConnectTimeoutError"),
        ("botocore.exceptions", "ReadTimeoutError"),
        ("botocore.exceptions", "ConnectionClosedError"),
        ("botocore.exceptions", "HTTPClientError"),
    ):
        return True
    if _is_instance(exc, ("botocore.exceptions", "ClientError")):
        response = getattr(exc, "response", {}) or {}
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = str(response.get("Error", {}).get("Code", ""))
        return status >= 500 or status == 429 or code in _S3_TRANSIENT_CODES
    return False


def _one_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return True
    if _is_instance(
        exc,
        ("requests.exceptions", "ConnectionError"),
        ("requests.exceptions", "Timeout"),
        ("urllib3.exceptions", "NewConnectionError"),
        ("urllib3.exceptions", "MaxRetryError"),
        ("urllib3.exceptions", "ProtocolError"),
        ("urllib3.exceptions", "TimeoutError"),
        ("aiohttp.client_exceptions", "ClientConnectionError"),
        ("aiohttp.client_exceptions", "ServerTimeoutError"),
        ("httpx", "TransportError"),
    ):
        return True
    if _is_instance(exc, ("psycopg2", "OperationalError"), ("sqlalchemy.exc", "OperationalError")):
        # "could not connect", "server closed the connection", "database is locked"; not "no such table"
        return bool(_DB_UNAVAILABLE.search(str(exc)))
    if _is_instance(exc, ("requests.exceptions", "HTTPError")):
        response = getattr(exc, "response", None)
        status = int(getattr(response, "status_code", 0) or 0)
        return status >= 500 or status == 429
    return _mlflow_transient(exc) or _botocore_transient(exc)


def is_transient(exc: BaseException) -> bool:
    """True when a retry may cure `exc`: anywhere in its chain, a service did not answer or said "not now"."""
    return any(_one_transient(e) for e in _chain(exc))


def first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    line = scrub_text(line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cause(exc: BaseException) -> str:
    """The innermost transient exception of the chain, as `Type: first line` (credentials removed)."""
    transient = [e for e in _chain(exc) if _one_transient(e) and not isinstance(e, TransientError)]
    inner = transient[-1] if transient else exc
    return f"{type(inner).__name__}: {first_line(str(inner))}"


@contextlib.contextmanager
def service(name: str, url: str, tried: str) -> Iterator[None]:
    """Calls to one service: a transient failure inside becomes one TransientError line naming the
    service, the URL with credentials removed and what was tried; a permanent one passes through."""
    try:
        yield
    except TransientError:
        raise
    except Exception as err:
        if not is_transient(err):
            raise
        raise TransientError(
            f"{name} at {scrub_text(str(url))} is unavailable ({cause(err)}); tried {tried}"
        ) from err


# --- budgets ---------------------------------------------------------------------------------------


def tracking_budget(retry: Any) -> str:
    """What one tracking call is allowed, in words (for the one-line failure)."""
    # Any: `infra.retry` (xib.config.RetryConfig), which a base module does not import, even for typing.
    return (
        f"{int(retry.tracking_max_retries) + 1} requests per call, {float(retry.tracking_timeout_s):g} s "
        f"timeout each, backoff factor {int(retry.tracking_backoff_factor)}"
    )


def apply_budgets(retry: Any) -> None:
    """Bound MLflow's and botocore's own retries and timeouts by `infra.retry` (children inherit them).
    `retry` is typed Any: a base module does not import xib.config (RetryConfig), even for typing.

    Without this, MLflow retries an unreachable server for minutes before saying anything.
    """
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(retry.tracking_max_retries))
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(retry.tracking_timeout_s))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(int(retry.tracking_backoff_factor))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"
    os.environ["AWS_MAX_ATTEMPTS"] = str(int(retry.storage_max_attempts))
    os.environ["AWS_RETRY_MODE"] = "standard"
    # botocore reads no timeout from the environment: xib's own S3 clients read these (s3_client_config)
    os.environ[S3_CONNECT_TIMEOUT_ENV] = str(float(retry.storage_connect_timeout_s))
    os.environ[S3_READ_TIMEOUT_ENV] = str(float(retry.storage_read_timeout_s))


def s3_client_config() -> Any:
    """botocore's client config under the storage budget `apply_budgets` exported to this process.

    Bounded connect and read timeouts and the standard retry mode, so an S3 endpoint that does not
    answer fails in seconds with a transient error instead of hanging a stage. Outside a stage (no
    budget exported) botocore's own defaults apply."""
    from botocore.config import Config

    timeouts = {
        name: float(os.environ[env])
        for name, env in (("connect_timeout", S3_CONNECT_TIMEOUT_ENV), ("read_timeout", S3_READ_TIMEOUT_ENV))
        if os.environ.get(env)
    }
    return Config(**timeouts, retries={"mode": "standard"})


# --- the command boundary --------------------------------------------------------------------------


def exit_status(command: str, err: BaseException) -> int:
    """`xib <command>` failed with `err`: print one line, return 75 (transient) or 1 (permanent).

    A transient failure of any kind counts, even one no `service` block wrapped; an exception that is
    neither transient nor an XibError is a bug and is re-raised with its traceback.
    """
    transient = is_transient(err)
    if not transient and not isinstance(err, XibError):
        raise err
    message = first_line(str(err), limit=1000) if isinstance(err, XibError) else cause(err)
    line = f"xib {command}: {'transient: ' if transient and not isinstance(err, TransientError) else ''}"
    line += message
    print(line, file=sys.stderr)
    failure_file = os.environ.get(FAILURE_FILE_ENV)
    if failure_file:
        with contextlib.suppress(OSError):
            with open(failure_file, "w") as fh:
                fh.write(line + "\n")
    return EX_TEMPFAIL if transient else 1
