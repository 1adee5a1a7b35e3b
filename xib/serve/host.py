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
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.registry.versions import load_version, resolve

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    name: str  # registered model name
    version: str
    runner: Any  # xib.runtime.runner.Runner
    loaded_at: float


class ModelHost:
    def __init__(self, cfg: XibConfig, ref: str, loader: Any = load_version) -> None:
        self.cfg, self.ref, self.loader = cfg, str(ref), loader
        self.name = cfg.gate.model_name
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
