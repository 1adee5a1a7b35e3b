"""Load test of `xib serve` on loopback: a bounded number of requests, in one run.

    nice .venv/bin/python benchmarks/serve_load.py [--requests 32] [--clients 8] [--rounds 3] [--threads 1]

Builds a project of the demo LLM's shape under a temporary folder (the demo image encoder and
projection config, random weights: the speed of the pieces, not their quality), registers it as
champion, then starts two `xib serve` on free 127.0.0.1 ports at once: with batching
(`serve.max_batch_size=<clients>`) and without (`serve.max_batch_size=1`). Each round runs these
loads against both, alternating which goes first, so the shared machine's other work falls on both
alike:
- one client, `--requests` requests one after another;
- `--clients` concurrent clients sharing `--requests` requests;
- the same concurrently with `stream: true`, timing the first text chunk.
Every request asks about an image (a PNG in the body) with the model's own decoding. Prints a
Markdown table: requests/s, p50/p95/p99 latency, time to first token, errors and lost requests;
exits non-zero when any request failed or went missing.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ARCH = {"hidden_size": 128, "layers": 4, "heads": 4, "intermediate_size": 344}  # the demo LLM's shape


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_project(root: Path) -> list[str]:
    import numpy as np

    from xib.config import load_config
    from xib.data.media import encode
    from xib.eval.run import run_eval
    from xib.eval.testing import make_tiny_project
    from xib.registry import registry as reg

    overrides = ["eval.modalities=[image]", "eval.discrn.pairs=[]", "eval.tasks=[caption]", "eval.plots=false",
                 "gate.model_name=xib-bench"]  # fmt: skip
    os.environ["XIB_ROOT"] = str(root)
    cfg = load_config(overrides)
    make_tiny_project(cfg, modalities=("image",), items=2, real_encoders=True, llm_arch=ARCH)
    run_eval(cfg)
    reg.promote_version(cfg, reg.run_gate(cfg)["version"], force=True)
    png = encode("image", np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (root / "image.png").write_bytes(png)
    return overrides


def request_body(root: Path, stream: bool) -> bytes:
    data = base64.b64encode((root / "image.png").read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
               {"type": "text", "text": "what is this ?"}]  # fmt: skip
    return json.dumps({"model": "xib-bench", "messages": [{"role": "user", "content": content}],
                       "stream": stream}).encode()  # fmt: skip


def one_request(url: str, body: bytes, stream: bool) -> tuple[int, float, float | None]:
    """(status, seconds to the last byte, seconds to the first text chunk when streaming)."""
    start = time.perf_counter()
    first = None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            if not stream:
                json.loads(r.read())
            else:
                for line in r:
                    if line.strip() == b"data: [DONE]":
                        break
                    if first is None and line.startswith(b"data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if choices[0].get("delta", {}).get("content"):  # the first text, not the role
                            first = time.perf_counter() - start
            return r.status, time.perf_counter() - start, first
    except urllib.error.HTTPError as err:
        return err.code, time.perf_counter() - start, None
    except OSError:
        return 0, time.perf_counter() - start, None


def phase(url: str, body: bytes, stream: bool, requests: int, clients: int) -> dict[str, Any]:
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: one_request(url, body, stream), range(requests)))
    wall = time.perf_counter() - start
    ok = [r for r in results if r[0] == 200]
    lat = sorted(r[1] for r in ok)
    ttft = sorted(r[2] for r in ok if r[2] is not None)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")

    return {
        "requests": requests, "answered": len(results), "errors": len(results) - len(ok),
        "lost": requests - len(results), "req_s": len(ok) / wall, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95),
        "p99": pct(lat, 0.99), "ttft_p50": pct(ttft, 0.5), "ttft_p95": pct(ttft, 0.95),
    }  # fmt: skip


def serve(root: Path, overrides: list[str], batch: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "xib.cli", "serve", "--port", str(port), *overrides,
            f"serve.max_batch_size={batch}", "serve.batch_wait_ms=5", "serve.max_queue=256",
            f"serve.threads={threads}", "serve.poll_s=0"]  # fmt: skip
    log = open(root / f"serve-{batch}.log", "wb")  # noqa: SIM115 - the server's log, closed with it
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except (urllib.error.HTTPError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start: {(root / f'serve-{batch}.log').read_text()[-2000:]}")
        time.sleep(0.3)


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one kind of load, summed (counts), averaged (rates) or worst-case (latencies)."""
    out: dict[str, Any] = {k: sum(p[k] for p in parts) for k in ("requests", "answered", "errors", "lost")}
    out["req_s"] = sum(p["req_s"] for p in parts) / len(parts)
    for key in ("p50", "p95", "p99", "ttft_p50", "ttft_p95"):
        out[key] = sorted(p[key] for p in parts)[len(parts) // 2]  # the median round
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32, help="requests per load and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the two servers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    args = parser.parse_args()
    loads = [("1 client, one after another", False, 1), (f"{args.clients} concurrent clients", False, args.clients),
             (f"{args.clients} concurrent, streamed", True, args.clients)]  # fmt: skip
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    mean_batch: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="xib-serve-bench-") as tmp:
        root = Path(tmp)
        overrides = build_project(root)
        bodies = {False: request_body(root, False), True: request_body(root, True)}
        # both servers up at once, loads alternating between them, so the machine's other work falls
        # on both alike (the ratios are what this measures)
        servers = {batch: serve(root, overrides, batch, args.threads) for batch in (args.clients, 1)}
        try:
            for _, url in servers.values():
                one_request(url + "/v1/chat/completions", bodies[False], False)  # warm-up
            for round_no in range(args.rounds):
                order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
                for name, stream, clients in loads:
                    for batch in order:
                        chat = servers[batch][1] + "/v1/chat/completions"
                        got = phase(chat, bodies[stream], stream, args.requests, clients)
                        results.setdefault((batch, name), []).append(got)
            for batch, (_, url) in servers.items():
                with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                    metrics = r.read().decode()
                sizes = {ln.split()[0]: float(ln.split()[-1]) for ln in metrics.splitlines()
                         if ln.startswith(("xib_batch_size_sum", "xib_batch_size_count"))}  # fmt: skip
                mean_batch[batch] = sizes["xib_batch_size_sum"] / max(1.0, sizes["xib_batch_size_count"])
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
    print(f"\n{platform.machine()}, {os.cpu_count()} cores (shared), server torch threads {args.threads}, "
          f"{args.rounds} rounds x {args.requests} requests per line\n")  # fmt: skip
    print(
        "| server max_batch_size | load | req/s | p50 s | p95 s | p99 s | first token p50 / p95 s | errors | lost |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    failed = 0
    rows = {key: merge(parts) for key, parts in results.items()}
    for (batch, name), r in sorted(rows.items(), key=lambda kv: -kv[0][0]):
        ttft = f"{r['ttft_p50']:.3f} / {r['ttft_p95']:.3f}" if r["ttft_p50"] == r["ttft_p50"] else "-"
        print(f"| {batch} | {name} | {r['req_s']:.2f} | {r['p50']:.3f} | {r['p95']:.3f} | {r['p99']:.3f} | {ttft} "
              f"| {r['errors']} | {r['lost']} |")  # fmt: skip
        failed += r["errors"] + r["lost"]
    for batch, mean in mean_batch.items():
        print(
            f"\nserver max_batch_size={batch}: {mean:.2f} answers per LLM call on average (its /metrics)",
            end="",
        )
    conc = loads[1][0]
    # one client at a time is the same work on both servers: their mean is the baseline
    single = (rows[(args.clients, loads[0][0])]["req_s"] + rows[(1, loads[0][0])]["req_s"]) / 2
    gain = rows[(args.clients, conc)]["req_s"] / single
    off = rows[(args.clients, conc)]["req_s"] / rows[(1, conc)]["req_s"]
    print(f"\n\nbatching gain: {gain:.2f}x the requests/s of one request at a time; {off:.2f}x the same "
          "concurrent load with batching off (max_batch_size=1)")  # fmt: skip
    if failed:
        raise SystemExit(f"{failed} requests failed or went missing")


if __name__ == "__main__":
    main()
