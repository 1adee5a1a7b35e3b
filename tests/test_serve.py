"""`xib serve` live on 127.0.0.1, driven with the `openai` client: answers (plain, streamed,
two-input, multi-turn), every refusal with its status and message, a path never opened, the hot
switch on promotion, metrics, and the chat page in headless Chromium."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port

from xib.config import load_config
from xib.data.media import encode
from xib.eval.testing import make_tiny_project
from xib.registry import registry as reg

pytestmark = pytest.mark.slow
NAME = "xib-chat-test"
TOKEN = "test-token-not-a-secret"
OVERRIDES = [
    "eval.modalities=[image,pc]",
    "eval.discrn.pairs=[image_pc]",
    "eval.discrn.max_items=2",
    "eval.tasks=[caption]",
    "eval.baselines=[]",
    "eval.discrn_scoring=[generate]",
    "eval.plots=false",
    "eval.threads=1",
    f"gate.model_name={NAME}",
]
SERVER = [
    "serve.poll_s=0.5",
    "serve.max_request_bytes=400000",
    "serve.batch_wait_ms=150",
    "serve.max_queue=3",
    "serve.threads=1",
    "data.validate.max_image_side=64",
]


def _cache_real_media(cfg: Any, root: Path) -> dict[str, bytes]:
    """The first DisCRn item's two inputs as real files, their features cached as `xib features` would."""
    from xib.runtime.checkpoints import checkpoint_dirs
    from xib.runtime.runner import load_model_from_dirs
    from xib.train.features import FeatureStore, cache_dir, write_features

    rng = np.random.default_rng(1)
    files = {
        "image": encode("image", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)),
        "pc": encode("pc", rng.standard_normal((256, 3)).astype(np.float32)),
    }
    item = json.loads((root / "data/discrn/image_pc/test.json").read_text())[0]
    runner = load_model_from_dirs(cfg, checkpoint_dirs(cfg))
    for modality, sample in zip(item["modalities"], item["sample_ids"]):
        folder = cache_dir(cfg, modality, "test")
        store = FeatureStore(folder)
        encoded = runner.encode(modality, files[modality], "")
        feats = [
            (i, *((encoded.features, encoded.mask) if i == sample else store.get(i))) for i in store.ids()
        ]
        write_features(folder, feats, {"key": "real-media", "modality": modality})
    return {m: files[m] for m in item["modalities"]} | {"_order": item["modalities"], "_q": item["question"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny project: evaluated (one DisCRn item on real media), version 1 champion, version 2 waiting."""
    root = tmp_path_factory.mktemp("chat")
    old = os.environ.get("XIB_ROOT")
    os.environ["XIB_ROOT"] = str(root)
    try:
        cfg = load_config(OVERRIDES)
        make_tiny_project(cfg, modalities=("image", "pc"), items=3, discrn_items=2, real_encoders=True)
        media = _cache_real_media(cfg, root)
        from xib.eval.run import run_eval

        run_eval(cfg)
        report = json.loads((root / "artifacts/eval/report.json").read_text())
        eval_text = report["discrn"]["discrn/image_pc"]["records"][0]["text"]
        first = reg.run_gate(cfg)
        reg.promote_version(cfg, first["version"], force=True)
        second = reg.run_gate(cfg)  # the same projections again: a second version to switch to
    finally:
        os.environ.pop("XIB_ROOT") if old is None else os.environ.__setitem__("XIB_ROOT", old)
    return {"root": root, "cfg": cfg, "media": media, "eval_text": eval_text, "v1": first["version"],
            "v2": second["version"]}  # fmt: skip


@pytest.fixture(scope="module")
def server(project: dict[str, Any]) -> Any:
    root, port = project["root"], free_port()
    env = {**os.environ, "XIB_ROOT": str(root), "XIB_SERVE_TOKEN": TOKEN}
    log = open(root / "serve.log", "w")  # noqa: SIM115 - open for the server's life
    proc = subprocess.Popen(
        [sys.executable, "-m", "xib.cli", "serve", "--port", str(port), *OVERRIDES, *SERVER],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            status, _ = _get(url + "/health")
            if status == 200:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"url": url, "proc": proc, "log": root / "serve.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _get(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def _post(url: str, body: Any, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _client(server: dict[str, Any]) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=server["url"] + "/v1", api_key=TOKEN, max_retries=0, timeout=120)


def _image_part(data: bytes) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(data).decode()},
    }


def _pc_part(data: bytes) -> dict[str, Any]:
    return {
        "type": "input_point_cloud",
        "input_point_cloud": {"data": base64.b64encode(data).decode(), "format": "npy"},
    }


def _ask(media: dict[str, Any], question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [_image_part(media["image"]), {"type": "text", "text": question}]}]


def test_answers_plain_and_streamed_with_an_image(project, server) -> None:
    client = _client(server)
    messages = _ask(project["media"], "what is this ?")
    reply = client.chat.completions.create(model=NAME, messages=messages)
    answer = reply.choices[0].message.content
    assert isinstance(answer, str) and answer and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.model == f"{NAME}/{project['v1']}"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    pieces, finish, usage = [], None, None
    stream = client.chat.completions.create(
        model=NAME, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == answer  # same greedy answer, delivered in pieces
    assert len([p for p in pieces if p]) >= 2 or len(answer.split()) < 2
    assert (
        finish == reply.choices[0].finish_reason and usage.completion_tokens == reply.usage.completion_tokens
    )

    # generation parameters are honoured: a shorter answer, n choices, a stop string
    short = client.chat.completions.create(model=NAME, messages=messages, max_tokens=1)
    assert short.usage.completion_tokens <= 1 and short.choices[0].finish_reason == "length"
    sampled = client.chat.completions.create(model=NAME, messages=messages, n=2, temperature=1.0, seed=7)
    again = client.chat.completions.create(model=NAME, messages=messages, n=2, temperature=1.0, seed=7)
    assert len(sampled.choices) == 2
    assert [c.message.content for c in sampled.choices] == [c.message.content for c in again.choices]
    if " " in answer:
        word = " " + answer.split(" ")[1]
        cut = client.chat.completions.create(model=NAME, messages=messages, stop=[word])
        assert cut.choices[0].message.content == answer[: answer.index(word)].strip()
        assert cut.choices[0].finish_reason == "stop"


def test_two_input_question_matches_xib_eval_on_the_same_item(project, server) -> None:
    media = project["media"]
    parts = [_image_part(media["image"]) if m == "image" else _pc_part(media["pc"]) for m in media["_order"]]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": media["_q"]}]}]
    reply = _client(server).chat.completions.create(model=NAME, messages=messages)
    assert reply.choices[0].message.content == project["eval_text"]


def test_multi_turn_conversation(project, server) -> None:
    client = _client(server)
    first = _ask(project["media"], "what is this ?")
    one = client.chat.completions.create(model=NAME, messages=first)
    messages = [*first, {"role": "assistant", "content": one.choices[0].message.content},
                {"role": "user", "content": "what colour is it ?"}]  # fmt: skip
    two = client.chat.completions.create(model=NAME, messages=messages)
    assert isinstance(two.choices[0].message.content, str)
    assert two.usage.prompt_tokens > one.usage.prompt_tokens  # the earlier turn is in the prompt


def test_every_refusal_has_its_status_and_message(project, server, tmp_path) -> None:
    url = server["url"] + "/v1/chat/completions"
    image = project["media"]["image"]
    ok = {"model": NAME, "messages": _ask(project["media"], "what is this ?")}

    def refused(body: Any, status: int, *words: str, **kw: Any) -> dict:
        code, reply = _post(url, body, **kw)
        assert code == status, (code, reply)
        message = reply["error"]["message"]
        assert all(w in message for w in words), message
        assert "Traceback" not in message and set(reply["error"]) == {"message", "type", "param", "code"}
        return reply["error"]

    refused(ok, 401, "bearer token", token=None)
    refused(ok, 401, "bearer token", token="wrong")
    refused({**ok, "model": "gpt-4o"}, 404, "gpt-4o", "not served")
    refused(ok, 400, "not JSON", raw=b"{not json")
    assert refused({**ok, "logprobs": True}, 400, "logprobs", "not supported")["param"] == "logprobs"
    assert refused({**ok, "temperature": 5}, 400, "temperature", "between 0 and 2")["param"] == "temperature"
    refused({**ok, "n": 50}, 400, "n:", "between 1 and 4")
    refused({**ok, "max_tokens": 0}, 400, "max_tokens")
    refused({**ok, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4")
    http = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    err = refused({**ok, "messages": [{"role": "user", "content": [http, {"type": "text", "text": "hi"}]}]},
                  400, "messages[0].content[0].image_url.url", "https", "never fetches")  # fmt: skip
    assert err["param"] == "messages[0].content[0].image_url.url"
    bad64 = {"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}
    refused({**ok, "messages": [{"role": "user", "content": [bad64, {"type": "text", "text": "hi"}]}]},
            400, "input_audio.data", "base64")  # fmt: skip
    mp3 = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}
    refused({**ok, "messages": [{"role": "user", "content": [mp3, {"type": "text", "text": "hi"}]}]},
            400, "format", "wav, flac")  # fmt: skip
    not_png = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"xx").decode()},
    }
    refused({**ok, "messages": [{"role": "user", "content": [not_png, {"type": "text", "text": "hi"}]}]},
            400, "messages[0].content[0].image_url", "cannot read the image")  # fmt: skip
    three = [_image_part(image)] * 3 + [{"type": "text", "text": "which ?"}]
    refused({**ok, "messages": [{"role": "user", "content": three}]}, 400, "content[2]", "at most 2 media")
    refused({**ok, "messages": [{"role": "user", "content": "hello"}]}, 400, "no media part")
    refused({**ok, "messages": [{"role": "user", "content": [_image_part(image)]}]}, 400, "needs a text part")
    refused({**ok, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role")
    mp4 = encode("video", np.zeros((5, 16, 16, 3), dtype=np.uint8))
    video = {"type": "input_video", "input_video": {"data": base64.b64encode(mp4).decode(), "format": "mp4"}}
    refused({**ok, "messages": [{"role": "user", "content": [video, {"type": "text", "text": "hi"}]}]},
            400, "this model answers over", "video")  # fmt: skip
    big = encode("image", np.zeros((80, 80, 3), dtype=np.uint8))
    refused({**ok, "messages": _ask({"image": big}, "hi")}, 413, "80x80", "max_image_side")
    refused({**ok, "pad": "x" * 500_000}, 413, "serve.max_request_bytes")
    status, body = _get(server["url"] + "/nowhere")
    assert status == 404 and "no route" in json.loads(body)["error"]["message"]


def test_a_path_in_a_request_is_never_opened(project, server, tmp_path) -> None:
    """A FIFO blocks whoever opens it for reading: the server answering at once, and no reader
    holding the FIFO afterwards, show it never opened the path."""
    url = server["url"] + "/v1/chat/completions"
    fifo = tmp_path / "secret.png"
    os.mkfifo(fifo)
    for value in (str(fifo), f"file://{fifo}"):
        part = {"type": "image_url", "image_url": {"url": value}}
        body = {
            "model": NAME,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}],
        }
        code, reply = _post(url, body)
        assert code == 400 and "never fetches a URL or opens a path" in reply["error"]["message"]
    for kind in ("input_audio", "input_point_cloud"):
        part = {"type": kind, kind: {"path": str(fifo), "format": "wav" if kind == "input_audio" else "npy"}}
        body = {
            "model": NAME,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}],
        }
        code, reply = _post(url, body)
        assert code == 400 and f"{kind}.data" in reply["error"]["message"]
    with pytest.raises(OSError):  # ENXIO: nobody has the FIFO open for reading
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_queue_limit_answers_429_and_metrics_count(project, server) -> None:
    url = server["url"] + "/v1/chat/completions"
    body = {"model": NAME, "messages": _ask(project["media"], "what is this ?"), "max_tokens": 8}
    with cf.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: _post(url, body), range(12)))
    codes = sorted(code for code, _ in results)
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
    busy = next(reply for code, reply in results if code == 429)
    assert "serve.max_queue" in busy["error"]["message"]
    status, text = _get(server["url"] + "/metrics")
    assert status == 200
    for name in ("xib_requests_total", "xib_errors_total", "xib_request_latency_seconds_bucket",
                 "xib_batch_size_bucket", "xib_completion_tokens_total", "xib_time_to_first_token_seconds"):  # fmt: skip
        assert name in text, name
    assert 'xib_errors_total{status="429"}' in text
    batches = [line for line in text.splitlines() if line.startswith("xib_batch_size_sum")]
    count = [line for line in text.splitlines() if line.startswith("xib_batch_size_count")]
    assert float(batches[0].split()[-1]) > float(count[0].split()[-1])  # some calls answered several


def test_chat_page_in_headless_chromium(project, server, tmp_path) -> None:
    from cdp import Browser

    image = tmp_path / "photo.png"
    image.write_bytes(project["media"]["image"])
    expected = (
        _client(server)
        .chat.completions.create(model=NAME, messages=_ask(project["media"], "what is this ?"))
        .choices[0]
        .message.content
    )
    with Browser(tmp_path) as browser:
        browser.open(server["url"] + "/")
        browser.wait("document.getElementById('status').textContent.includes('version')")
        assert browser.eval("document.querySelectorAll('script[src], link[href], img[src]').length") == 0
        browser.set_files("#files", [image])
        browser.eval(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
        browser.eval("document.getElementById('question').value = 'what is this ?'")
        browser.eval("document.getElementById('send').click()")
        browser.wait(
            "document.getElementById('answer-0') && document.getElementById('answer-0').dataset.done"
        )
        assert browser.eval("document.getElementById('answer-0').dataset.done") == "true"
        assert browser.eval("document.getElementById('answer-0').textContent") == expected


def test_hot_switch_on_promotion_keeps_in_flight_requests(project, server) -> None:
    """Runs last: it moves the champion. Requests sent before, during and after the switch all finish."""
    client = _client(server)
    messages = _ask(project["media"], "what is this ?")
    cfg, root = project["cfg"], project["root"]

    def one(_: int) -> str:
        return client.chat.completions.create(model=NAME, messages=messages, max_tokens=16).model

    switched = threading.Event()

    def keep_asking(_: int) -> list[str]:
        """Requests one after another from before the promotion until two after the switch."""
        seen, after = [], 0
        while after < 2:
            seen.append(one(0))  # raises (and fails the test) on any error
            after += switched.is_set()
        return seen

    with cf.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(keep_asking, i) for i in range(2)]
        os.environ["XIB_ROOT"] = str(root)
        try:
            reg.promote_version(cfg, project["v2"], force=True)
        finally:
            os.environ.pop("XIB_ROOT")
        deadline = time.monotonic() + 120
        while json.loads(_get(server["url"] + "/health")[1]).get("version") != project["v2"]:
            assert time.monotonic() < deadline, server["log"].read_text()[-2000:]
            time.sleep(0.2)
        switched.set()
        served = [model for f in futures for model in f.result()]
    # answers kept coming while the new version loaded and after it took over: none failed
    assert served[0] == f"{NAME}/{project['v1']}" and set(served) == {
        f"{NAME}/{project['v1']}",
        f"{NAME}/{project['v2']}",
    }
    assert one(0) == f"{NAME}/{project['v2']}"
    # the token-guarded reload answers with the version now served
    code, reply = _post(server["url"] + "/admin/reload", {})
    assert code == 200 and reply["version"] == project["v2"]
    assert _post(server["url"] + "/admin/reload", {}, token=None)[0] == 401
    models = json.loads(_get(server["url"] + "/v1/models")[1])["data"]
    served_ids = {m["id"] for m in models if m["served"]}
    assert f"{NAME}/{project['v2']}" in served_ids and f"{NAME}@champion" in served_ids
    assert any(m["id"] == f"{NAME}/{project['v1']}" and "previous" in m["aliases"] for m in models)


def test_503_while_the_model_loads_and_when_it_cannot(project) -> None:
    """In process: a load that has not finished answers 503 "loading"; a failed one says why."""
    from fastapi.testclient import TestClient

    from xib.errors import XibError
    from xib.serve.app import create_app
    from xib.serve.host import ModelHost

    release = threading.Event()

    def slow_loader(cfg: Any, version: str) -> Any:
        release.wait(60)
        raise XibError(f"version {version}: its LLM folder is gone")

    os.environ["XIB_ROOT"] = str(project["root"])
    try:
        cfg = load_config([*OVERRIDES, "serve.poll_s=0"])
        host = ModelHost(cfg, "champion", loader=slow_loader)
        with TestClient(create_app(cfg, host)) as client:
            body = {"model": NAME, "messages": _ask(project["media"], "what is this ?")}
            health = client.get("/health", headers={"Origin": "http://elsewhere.example"})
            assert health.status_code == 503 and health.json()["status"] == "loading"
            assert "access-control-allow-origin" not in health.headers  # CORS off by default
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 503 and "loading" in reply.json()["error"]["message"]
            release.set()
            deadline = time.monotonic() + 30
            while host.error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.get("/health").json() == {"status": "failed", "error": host.error}
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 503 and "its LLM folder is gone" in reply.json()["error"]["message"]
    finally:
        os.environ.pop("XIB_ROOT")
