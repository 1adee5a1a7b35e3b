"""An OpenAI chat-completions request body -> what the runtime answers: media in order, the
question (with earlier turns as text), generation options. Every refusal names the field and rule.

Content parts (user messages):
- `{"type": "text", "text": ...}`
- `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` (data URLs only)
- `{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav" | "flac"}}`
- `{"type": "input_video", "input_video": {"data": <base64>, "format": "mp4"}}` (xib's own)
- `{"type": "input_point_cloud", "input_point_cloud": {"data": <base64>, "format": "npy"}}` (xib's own)

The model was trained on single-turn prompts: one input (instruction layout) or two (the DisCRn
layout). Media of every user message count, in order; earlier turns and system text become text
before the last question (`question: ... answer: ...`), so a one-turn request is asked exactly as
`xib ask` and evaluation ask it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xib.serve.errors import ApiError, bad
from xib.serve.media import FORMATS, b64, decode_media, image_url

if TYPE_CHECKING:
    from xib.data.config import ValidateConfig
    from xib.serve.config import ServeConfig

KNOWN = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
         "seed", "stream", "stream_options", "user"}  # fmt: skip
PART_MODALITY = {
    "image_url": "image",
    "input_audio": "audio",
    "input_video": "video",
    "input_point_cloud": "pc",
}
ROLES = ("system", "user", "assistant")


@dataclass
class ChatRequest:
    model: str
    media: list[tuple[str, Any]]  # (modality, decoded array) in conversation order
    question: str
    options: dict[str, Any] = field(default_factory=dict)  # GenerationOptions changes
    n: int = 1
    stream: bool = False
    include_usage: bool = False


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise bad(where, "must be a string")
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(key, "must be a number")
    if not lo <= value <= hi:
        raise bad(key, f"must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def _integer(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(key, "must be an integer")
    if not lo <= value <= hi:
        raise bad(key, f"must be between {lo} and {hi}, got {value}")
    return int(value)


def _parts(content: Any, where: str, role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise bad(where, "must be a string or a non-empty list of content parts")
    for i, part in enumerate(content):
        here = f"{where}[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad(here, "a content part is an object with a `type`")
        kind = part["type"]
        if kind != "text" and kind not in PART_MODALITY:
            known = ", ".join(["text", *PART_MODALITY])
            raise bad(f"{here}.type", f"unknown part type {kind!r} (known: {known})")
        if kind != "text" and role != "user":
            raise bad(here, f"media parts belong in user messages, not {role} ones")
    return content


def _media(part: dict[str, Any], where: str, vcfg: ValidateConfig) -> tuple[str, Any]:
    kind = part["type"]
    modality = PART_MODALITY[kind]
    inner = part.get(kind)
    if not isinstance(inner, dict):
        raise bad(f"{where}.{kind}", "must be an object")
    limit = vcfg.max_media_bytes
    if kind == "image_url":
        data = image_url(inner.get("url"), f"{where}.image_url.url", limit)
        return modality, decode_media(modality, data, "", f"{where}.image_url", vcfg)
    fmt = inner.get("format")
    allowed = FORMATS[modality]
    if fmt not in allowed:
        raise bad(f"{where}.{kind}.format", f"must be one of {', '.join(allowed)}, got {fmt!r}")
    data = b64(inner.get("data"), f"{where}.{kind}.data", limit)
    return modality, decode_media(modality, data, str(fmt), f"{where}.{kind}", vcfg)


def _question(turns: list[tuple[str, str]]) -> str:
    """The conversation as one question: system text, earlier questions and answers, then the last turn."""
    context = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "system" and text:
            context.append(text)
        elif role == "user":
            if pending:
                context.append(f"question: {pending}")
            pending = text
        elif role == "assistant":
            context.append(f"question: {pending} answer: {text}" if pending else text)
            pending = None
    if pending:
        context.append(f"question: {pending}")
    return " ".join([*context, turns[-1][1]]).strip()


def _generation_options(body: dict[str, Any], scfg: ServeConfig) -> dict[str, Any]:
    """The request's sampling options (OpenAI names), each checked against its range and `serve` limit."""
    options: dict[str, Any] = {}
    max_tokens = _integer(body, "max_completion_tokens", 1, scfg.max_tokens)
    max_tokens = _integer(body, "max_tokens", 1, scfg.max_tokens) if max_tokens is None else max_tokens
    if max_tokens is not None:
        options["max_new_tokens"] = max_tokens
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        options["temperature"] = temperature
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        if top_p <= 0:
            raise bad("top_p", "must be above 0")
        options["top_p"] = top_p
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    if seed is not None:
        options["seed"] = seed % (2**32)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise bad("stop", "must be a non-empty string or a list of them")
        if len(stops) > scfg.max_stop:
            raise bad("stop", f"at most {scfg.max_stop} stop strings")
        options["stop"] = tuple(stops)
    return options


def parse_chat(body: Any, scfg: ServeConfig, vcfg: ValidateConfig) -> ChatRequest:
    """Check and decode a request body; `scfg` is `cfg.serve`, `vcfg` the ingest rules (`data.validate`)."""
    if not isinstance(body, dict):
        raise bad("body", "must be a JSON object")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise bad(unknown[0], "is not supported by this server (supported: " + ", ".join(sorted(KNOWN)) + ")")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "must name the model (see GET /v1/models)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty list")
    if len(messages) > scfg.max_messages:
        raise ApiError(413, f"messages: at most {scfg.max_messages} messages (serve.max_messages)",
                       param="messages", code="too_large")  # fmt: skip

    turns: list[tuple[str, str]] = []  # (role, text)
    media: list[tuple[str, Any]] = []
    chars = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(where, "must be an object with `role` and `content`")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        texts = []
        for j, part in enumerate(_parts(message.get("content"), f"{where}.content", str(role))):
            here = f"{where}.content[{j}]"
            if part["type"] == "text":
                texts.append(_text(part.get("text"), f"{here}.text").strip())
                continue
            if len(media) >= scfg.max_media_inputs:
                raise bad(
                    here,
                    f"at most {scfg.max_media_inputs} media inputs per conversation: the model answers "
                    "over one input, or compares two (serve.max_media_inputs)",
                )
            media.append(_media(part, here, vcfg))
        text = " ".join(t for t in texts if t)
        chars += len(text)
        turns.append((str(role), text))
    if chars > scfg.max_text_chars:
        raise ApiError(413, f"messages: {chars} characters of text, at most {scfg.max_text_chars} "
                            "(serve.max_text_chars)", param="messages", code="too_large")  # fmt: skip
    last = len(messages) - 1
    if turns[-1][0] != "user":
        raise bad(f"messages[{last}].role", "the last message must be the user's question")
    if not turns[-1][1]:
        raise bad(f"messages[{last}].content", "the last user message needs a text part (the question)")
    if not media:
        raise bad("messages", "no media part: the model answers questions about an image, audio, video or "
                              "point cloud (image_url, input_audio, input_video, input_point_cloud)")  # fmt: skip

    question = _question(turns)

    options = _generation_options(body, scfg)
    n = _integer(body, "n", 1, scfg.max_n) or 1
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream", "must be true or false")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
        raise bad("stream_options", 'only {"include_usage": true|false} is supported')
    return ChatRequest(
        model=model, media=media, question=question, options=options, n=n, stream=stream,
        include_usage=bool(stream_options.get("include_usage", False)),
    )  # fmt: skip
