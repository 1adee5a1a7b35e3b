"""Prometheus metrics of one server (its own registry, so several servers in one process, as in
tests, do not mix): requests, errors, latency, time to first token, batch sizes, tokens."""

from __future__ import annotations

from typing import Any


class ServeMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "xib_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "xib_errors", "Requests answered with an error, by status", ["status"], registry=r
        )
        self.latency = Histogram(
            "xib_request_latency_seconds", "Chat completion latency (request in to last byte)", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )  # fmt: skip
        self.first_token = Histogram(
            "xib_time_to_first_token_seconds", "Streamed chat completions: request in to first text", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )  # fmt: skip
        self.batch_rows = Histogram(
            "xib_batch_size", "Answers generated together in one LLM call", registry=r,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
        )  # fmt: skip
        self.batch_seconds = Histogram("xib_batch_seconds", "Seconds per batched LLM call", registry=r)
        self.prompt_tokens = Counter("xib_prompt_tokens", "Prompt positions read by the LLM", registry=r)
        self.completion_tokens = Counter("xib_completion_tokens", "Tokens generated", registry=r)
        self.queue = Gauge("xib_queue_length", "Requests waiting or running", registry=r)
        self.version = Gauge("xib_model_version", "The registered version being served", registry=r)
        self.switches = Gauge("xib_model_switches", "Times the served version changed", registry=r)

    def observe_batch(self, batch_rows: int, seconds: float) -> None:
        self.batch_rows.observe(batch_rows)
        self.batch_seconds.observe(seconds)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        if status >= 400:
            self.errors.labels(status=str(status)).inc()

    def usage(self, completions: Any) -> None:
        for c in completions:
            self.prompt_tokens.inc(c.prompt_tokens)
            self.completion_tokens.inc(c.completion_tokens)
