"""The registered model a server answers with, loaded once and switched when its alias moves.

`ModelHost` resolves `serve.model` (an alias or a version number) in the registry, loads that
version in a background thread (the server answers 503 until it is ready), and, when the reference
is an alias, checks every `serve.poll_s` seconds (or on `check()`) whether the alias now points at
another version. The new version loads beside the old one and replaces it in one assignment:
requests already holding the old one finish on it; new requests get the new one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from xib.errors import XibError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    name: str  # registered model name
    version: str
    runner: Any  # xib.runtime.runner.Runner
    loaded_at: float


def resolve(cfg: Any, ref: str) -> str:
    """The version `ref` (alias or number) names now, or an XibError saying what exists."""
    from xib.registry.registry import alias_version, client

    name = str(cfg.gate.model_name)
    if ref.isdigit():
        from mlflow.exceptions import MlflowException

        try:
            client(cfg).get_model_version(name, ref)
        except MlflowException:
            raise XibError(
                f"model {name!r} has no version {ref} in {cfg.infra.mlflow_tracking_uri}"
            ) from None
        return ref
    version = alias_version(cfg, ref)
    if version is None:
        hint = " (run `xib gate`, then `xib promote`)" if ref == "champion" else ""
        raise XibError(f"model {name!r} has no {ref!r} in {cfg.infra.mlflow_tracking_uri}{hint}")
    return version


def load_version(cfg: Any, version: str) -> Any:
    """The runner of one registered version, through its MLflow pyfunc (the same load `xib ask` does)."""
    import mlflow

    from xib.registry.registry import client

    client(cfg)  # points mlflow at the project's tracking URI
    model = mlflow.pyfunc.load_model(f"models:/{cfg.gate.model_name}/{version}")
    return model.unwrap_python_model().served.runner


def registry_listing(cfg: Any) -> tuple[list[str], dict[str, str]]:
    """The registered versions and the aliases (alias -> version) of `gate.model_name`."""
    from xib.registry.registry import client

    mc = client(cfg)
    name = str(cfg.gate.model_name)
    versions = sorted((str(v.version) for v in mc.search_model_versions(f"name='{name}'")), key=int)
    model = mc.get_registered_model(name) if versions else None
    aliases = {str(k): str(v) for k, v in (getattr(model, "aliases", None) or {}).items()}
    return versions, aliases


class ModelHost:
    def __init__(self, cfg: Any, ref: str, loader: Any = load_version) -> None:
        self.cfg, self.ref, self.loader = cfg, str(ref), loader
        self.name = str(cfg.gate.model_name)
        self.current: Loaded | None = None
        self.error: str | None = None  # why the first load failed, for /health and 503s
        self.switches = 0
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xib-model-host", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            self.check()
        except Exception as err:  # noqa: BLE001 - reported by /health, the process stays up
            self.error = str(err).splitlines()[0] if isinstance(err, XibError) else repr(err)
            log.exception("loading %s@%s failed", self.name, self.ref)
        poll = float(self.cfg.serve.poll_s)
        if self.ref.isdigit() or poll <= 0:
            return
        while not self._stop.wait(poll):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - keep serving the version we have
                log.exception("checking %s@%s failed; still serving version %s", self.name, self.ref,
                              self.current.version if self.current else None)  # fmt: skip

    def check(self) -> str:
        """Load the version the reference names now, if it is not the one served; returns it."""
        with self._lock:
            version = resolve(self.cfg, self.ref)
            if self.current is not None and self.current.version == version:
                return version
            start = time.perf_counter()
            runner = self.loader(self.cfg, version)
            old = self.current
            self.current = Loaded(self.name, version, runner, time.time())
            self.error = None
            if old is not None:
                self.switches += 1
            log.info("serving %s version %s (%s) after %.1f s of loading%s", self.name, version, self.ref,
                     time.perf_counter() - start, f", was {old.version}" if old else "")  # fmt: skip
            return version
