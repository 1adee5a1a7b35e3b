"""Concurrent requests answered together: one worker thread takes the oldest waiting request, waits
`serve.batch_wait_ms` for others that can share its LLM call (same loaded version and options; a
seeded sampled request goes alone, so its seed means what it says), and generates at most
`serve.max_batch_size` answers at once. Text streams back to each request's event loop as it comes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xib.runtime.generation import Completion, GenerationOptions

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    loaded: Any  # host.Loaded: the version this request was prepared for and is answered by
    prompt: Any  # a filled prompt (xib.models.xinstructblip.fill_slots)
    options: GenerationOptions
    n: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    queued_at: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple[Any, ...]:
        alone = self.options.sampling and self.options.seed is not None
        return (id(self.loaded.runner), self.options, id(self) if alone else None)

    def send(self, kind: str, value: Any) -> None:
        """To the request's event loop: ("text", (index, delta)), ("done", completions), ("error", exc)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class QueueFull(Exception):
    pass


class Batcher:
    def __init__(self, max_batch: int, wait_s: float, max_queue: int, observe: Callable[..., None]) -> None:
        self.max_batch, self.wait_s, self.max_queue = max(1, max_batch), max(0.0, wait_s), max(1, max_queue)
        self.observe = observe  # observe(batch_rows=..., seconds=...) for metrics
        self._queue: queue.Queue[Job] = queue.Queue()
        self._held: list[Job] = []  # taken from the queue but not batchable with the last batch
        self._pending = 0  # waiting or running
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xib-batcher", daemon=True)

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def submit(self, job: Job) -> None:
        with self._count_lock:
            if self._pending >= self.max_queue:
                raise QueueFull(f"{self._pending} requests are waiting or running (serve.max_queue)")
            self._pending += 1
        self._queue.put(job)

    def _done(self, count: int) -> None:
        with self._count_lock:
            self._pending -= count

    def _next(self, timeout: float) -> Job | None:
        if self._held:
            return self._held.pop(0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _collect(self, first: Job) -> list[Job]:
        batch, rows = [first], first.n
        deadline = time.perf_counter() + self.wait_s
        later: list[Job] = []
        while rows < self.max_batch:
            left = deadline - time.perf_counter()
            job = self._held.pop(0) if self._held else None
            if job is None:
                if left <= 0:
                    break
                try:
                    job = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if job.key() == first.key() and rows + job.n <= self.max_batch:
                batch.append(job)
                rows += job.n
            else:
                later.append(job)
        self._held = later + self._held
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            first = self._next(0.2)
            if first is None:
                continue
            batch = self._collect(first)
            try:
                self._answer(batch)
            finally:
                self._done(len(batch))

    def _answer(self, batch: list[Job]) -> None:
        runner, options = batch[0].loaded.runner, batch[0].options
        prompts: list[Any] = []
        owners: list[tuple[Job, int]] = []  # row -> (job, choice index)
        for job in batch:
            for index in range(job.n):
                prompts.append(job.prompt)
                owners.append((job, index))

        def on_text(row: int, delta: str) -> None:
            job, index = owners[row]
            job.send("text", (index, delta))

        start = time.perf_counter()
        try:
            completions: list[Completion] = runner.complete(
                prompts, options, on_text, batch_size=len(prompts)
            )
        except Exception as err:  # noqa: BLE001 - each request gets its error; the worker lives on
            log.exception("generation failed for a batch of %d", len(prompts))
            for job in batch:
                job.send("error", err)
            return
        self.observe(batch_rows=len(prompts), seconds=time.perf_counter() - start)
        at = 0
        for job in batch:
            job.send("done", completions[at : at + job.n])
            at += job.n
