"""What `xib ask` checks and sends before (or instead of) loading a model: its inputs, the
overrides among its arguments, and the question to a running `xib serve`."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

from xib.errors import XibError
from xib.registry.pyfunc import SUFFIXES
from xib.runtime.runner import MAX_INPUTS

# An argument is a config override only when it reads `<config key>=...` (`eval.threads=1`), so a
# question like "is x=1 ?" or "a=b" stays a question.
# key=value (+/++/~ prefixes), or ~key alone (delete the key)
OVERRIDE = re.compile(r"^(?:[+~]{0,2}(?P<root>[A-Za-z_]\w*)(\.\w+)*=|~(?P<droot>[A-Za-z_]\w*)(\.\w+)*$)")
ROOTS = {"seed", "paths", "modality", "data", "model", "bootstrap", "train", "eval", "gate", "infra", "serve",
         "hydra"}  # fmt: skip
ANSWER_CUE = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own arguments, Hydra overrides)."""
    own: list[str] = []
    overrides: list[str] = []
    for arg in args:
        match = OVERRIDE.match(arg)
        (overrides if match and (match.group("root") or match.group("droot")) in ROOTS else own).append(arg)
    return own, overrides


def ask_inputs(paths: list[str], question: str) -> list[tuple[str, Path]]:
    """(modality, path) of each input, or the one-line reason the question cannot be asked."""
    if not question:
        raise XibError("give the question after the inputs: xib ask --input a.png 'what is this ?'")
    if not paths:
        raise XibError("give at least one --input media file")
    if len(paths) > MAX_INPUTS:
        raise XibError(
            f"{len(paths)} inputs given: the model answers over one input, or compares two (the DisCRn "
            f"prompt); drop {', '.join(paths[MAX_INPUTS:])}"
        )
    out = []
    for raw in paths:
        path = Path(raw).expanduser()
        modality = SUFFIXES.get(path.suffix.lower())
        if modality is None:
            raise XibError(
                f"{raw}: cannot tell the modality from the extension (known: {' '.join(sorted(SUFFIXES))})"
            )
        if not path.is_file():
            raise XibError(f"{raw}: no such file")
        out.append((modality, path))
    return out


def strip_answer_cue(answer: str) -> str:
    """The answer without a leading `answer:` the LLM may repeat from the prompt's layout."""
    return ANSWER_CUE.sub("", answer, count=1).strip()


def _part(modality: str, path: Path) -> dict[str, Any]:
    data = base64.b64encode(path.read_bytes()).decode()
    if modality == "image":
        mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    kind = {"audio": "input_audio", "video": "input_video", "pc": "input_point_cloud"}[modality]
    return {"type": kind, kind: {"data": data, "format": path.suffix.lower().lstrip(".")}}


def ask_server(url: str, media: list[tuple[str, Path]], question: str, timeout: float = 300.0) -> str:
    """The question sent to a running `xib serve` (its bearer token from XIB_SERVE_TOKEN, if set)."""
    import urllib.error
    import urllib.request

    content = [_part(m, p) for m, p in media] + [{"type": "text", "text": question}]
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("XIB_SERVE_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    health = url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as r:
            model = json.loads(r.read())["model"]
        messages = [{"role": "user", "content": content}]
        body = json.dumps({"model": model, "messages": messages}).encode()
        req = urllib.request.Request(url.rstrip("/") + "/v1/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return str(json.loads(r.read())["choices"][0]["message"]["content"])
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise XibError(f"{url}: {err.code} {message}") from None
    except (OSError, KeyError, ValueError) as err:
        raise XibError(f"{url}: no answer from the server ({err})") from None
