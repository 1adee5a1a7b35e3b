"""The HTTP API of `xib serve` (FastAPI on uvicorn, both already dependencies of MLflow/Prefect).

Routes: `POST /v1/chat/completions` (OpenAI format, `stream: true` as server-sent events),
`GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text), `POST /admin/reload` (token only),
`GET /` (the chat page). Every error is `{"error": {message, type, param, code}}` with its status;
a failure inside the server is logged here and answered with a 500 that carries no trace.

No `from __future__ import annotations` here: FastAPI reads the handlers' `request: Request`
annotations at definition time, and `Request` is imported inside `create_app` (lazily).
"""

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.registry.versions import registry_listing
from xib.serve.batcher import Batcher, Job, QueueFull
from xib.serve.errors import ApiError
from xib.serve.host import Loaded, ModelHost
from xib.serve.metrics import ServeMetrics

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)


def _choice_text(completions: list[Any]) -> list[dict[str, Any]]:
    return [
        {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason,
         "logprobs": None}
        for i, c in enumerate(completions)
    ]  # fmt: skip


def _usage(completions: list[Any]) -> dict[str, int]:
    prompt = completions[0].prompt_tokens if completions else 0
    completion = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(cfg: "XibConfig", host: ModelHost, token: str | None = None) -> Any:
    # Long on purpose: the routes are closures over one host, batcher and metrics (FastAPI's idiom), each short.
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from xib.serve.page import CHAT_PAGE
    from xib.serve.request import parse_chat

    scfg = cfg.serve
    metrics = ServeMetrics()
    batcher = Batcher(scfg.max_batch_size, scfg.batch_wait_ms / 1000, scfg.max_queue, metrics.observe_batch)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        host.start()
        yield
        host.stop()
        batcher.stop()

    app = FastAPI(title="xib", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.host, app.state.batcher, app.state.metrics = host, batcher, metrics
    if list(scfg.cors_origins):
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(scfg.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip

    def error_response(err: ApiError) -> Any:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Any:
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Any:
        message = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return error_response(ApiError(err.status_code, message.get(err.status_code, str(err.detail))))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> Any:
        log.exception("internal error on %s", request.url.path)
        return error_response(
            ApiError(500, "internal server error (see the server log)", code="internal_error")
        )

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.url.path if request.url.path in ROUTES else "other"
        metrics.count(route, response.status_code)
        return response

    def authorize(request: Request) -> None:
        if not token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, f"missing or wrong bearer token (the server reads it from ${scfg.token_env})",
                           code="invalid_api_key")  # fmt: skip

    def loaded_or_503() -> Loaded:
        current = host.current
        if current is None:
            if host.error:
                raise ApiError(503, f"the model could not be loaded: {host.error}", code="model_unavailable")
            raise ApiError(503, "the model is loading; try again shortly", code="model_loading")
        return current

    async def read_body(request: Request) -> Any:
        limit = scfg.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body is {declared} bytes, at most {limit} (serve.max_request_bytes)",
                           code="too_large")  # fmt: skip
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    413, f"request body is over {limit} bytes (serve.max_request_bytes)", code="too_large"
                )
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"body: not JSON ({err.msg if hasattr(err, 'msg') else err})",
                           param="body", code="invalid_json") from None  # fmt: skip

    def served_names(current: Loaded) -> set[str]:
        return {current.name, host.ref, f"{current.name}@{host.ref}", current.version,
                f"{current.name}/{current.version}"}  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    async def page() -> Any:
        return HTMLResponse(CHAT_PAGE)

    @app.get("/health")
    async def health() -> Any:
        current = host.current
        if current is None:
            status = "failed" if host.error else "loading"
            return JSONResponse({"status": status, "error": host.error}, status_code=503)
        return {"status": "ok", "model": current.name, "version": current.version, "ref": host.ref,
                "queue": batcher.pending, "switches": host.switches}  # fmt: skip

    @app.get("/metrics")
    async def prometheus(request: Request) -> Any:
        authorize(request)
        metrics.queue.set(batcher.pending)
        metrics.switches.set(host.switches)
        if host.current is not None:
            metrics.version.set(int(host.current.version))
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload")
    async def reload(request: Request) -> Any:
        if not token:
            raise ApiError(403, f"reload is switched off: start the server with ${scfg.token_env} set",
                           code="reload_disabled")  # fmt: skip
        authorize(request)
        before = host.current.version if host.current else None
        try:
            version = await run_in_threadpool(host.check)
        except XibError as err:
            raise ApiError(404, str(err).splitlines()[0], code="model_not_found") from None
        return {"model": host.name, "ref": host.ref, "version": version, "previous": before}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        authorize(request)
        current = loaded_or_503()
        versions, aliases = await run_in_threadpool(registry_listing, cfg)
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        data = [
            {"id": f"{host.name}/{v}", "object": "model", "created": 0, "owned_by": "xib",
             "aliases": sorted(by_version.get(v, [])), "served": v == current.version}
            for v in versions
        ]  # fmt: skip
        data += [
            {"id": f"{host.name}@{a}", "object": "model", "created": 0, "owned_by": "xib", "version": v,
             "served": a == host.ref and v == current.version}
            for a, v in sorted(aliases.items())
        ]  # fmt: skip
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        # Long on purpose: one request's whole life (check, queue, answer or stream) read top to bottom.
        started = time.perf_counter()
        authorize(request)
        current = loaded_or_503()
        body = await read_body(request)
        chat = await run_in_threadpool(parse_chat, body, scfg, cfg.data.validate)
        if chat.model not in served_names(current):
            raise ApiError(
                404,
                f"model {chat.model!r} is not served here; this server answers with {host.name}@{host.ref} "
                f"(version {current.version}): use {host.name!r} (GET /v1/models lists the registry)",
                param="model", code="model_not_found",
            )  # fmt: skip
        try:
            prompt = await run_in_threadpool(current.runner.prompt, chat.media, chat.question, True)
        except XibError as err:
            raise ApiError(400, f"messages: {str(err).splitlines()[0]}", param="messages") from None
        options = current.runner.options.with_request(**chat.options)
        job = Job(current, prompt, options, chat.n, asyncio.get_running_loop())
        try:
            batcher.submit(job)
        except QueueFull as err:
            raise ApiError(429, f"the server is busy: {err}; retry later", code="queue_full") from None
        cid, created, model_id = (
            f"chatcmpl-{uuid.uuid4().hex}",
            int(time.time()),
            f"{current.name}/{current.version}",
        )
        head = {
            "id": cid,
            "created": created,
            "model": model_id,
            "system_fingerprint": f"xib-{current.version}",
        }

        if not chat.stream:
            while True:
                kind, value = await job.events.get()
                if kind == "error":
                    raise value
                if kind == "done":
                    break
            metrics.usage(value)
            metrics.latency.observe(time.perf_counter() - started)
            return {
                **head,
                "object": "chat.completion",
                "choices": _choice_text(value),
                "usage": _usage(value),
            }

        def sse(payload: Any) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            return sse({**head, "object": "chat.completion.chunk", "choices": choices, **extra})

        async def events() -> AsyncIterator[str]:
            first = True
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                          "logprobs": None} for i in range(chat.n)])  # fmt: skip
            while True:
                kind, value = await job.events.get()
                if kind == "text":
                    if first:
                        metrics.first_token.observe(time.perf_counter() - started)
                        first = False
                    index, delta = value
                    yield chunk([{"index": index, "delta": {"content": delta}, "finish_reason": None,
                                  "logprobs": None}])  # fmt: skip
                elif kind == "error":
                    log.error("generation failed: %r", value)
                    yield sse(ApiError(500, "generation failed (see the server log)").body())
                    break
                else:
                    metrics.usage(value)
                    if first:  # beam search: the whole answer arrived at once
                        metrics.first_token.observe(time.perf_counter() - started)
                        for i, c in enumerate(value):
                            if c.text:
                                yield chunk([{"index": i, "delta": {"content": c.text}, "finish_reason": None,
                                              "logprobs": None}])  # fmt: skip
                    yield chunk([{"index": i, "delta": {}, "finish_reason": c.finish_reason, "logprobs": None}
                                 for i, c in enumerate(value)])  # fmt: skip
                    if chat.include_usage:
                        yield chunk([], usage=_usage(value))
                    break
            metrics.latency.observe(time.perf_counter() - started)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    return app


ROUTES = {"/", "/health", "/metrics", "/admin/reload", "/v1/models", "/v1/chat/completions"}


def bearer_token(cfg: "XibConfig") -> str | None:
    """The token requests must carry, from the environment variable `serve.token_env` names."""
    return os.environ.get(cfg.serve.token_env) or None
