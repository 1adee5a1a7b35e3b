"""Which process settings change a trained model's bits on this CPU (benchmarks/determinism.md).

`python benchmarks/determinism_probe.py` trains the same small transformer block (matrix products
through MKL, a convolution through oneDNN, layer norm / softmax / GELU through ATen's vectorised
kernels; 30 Adam steps, fixed seed) in fresh processes that differ in one setting each, and prints
a hash of the final weights per setting: equal hashes are bit-identical runs. An AVX2-only machine
is emulated on an AVX-512 one by the same variables xib pins (`xib.train.determinism`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, tuple[dict[str, str], int]] = {
    "unpinned, 2 threads": ({}, 2),
    "unpinned, 2 threads (again)": ({}, 2),
    "unpinned, 1 thread": ({}, 1),
    "ATen kernels AVX2 only": ({"ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "MKL code path AVX2 only": ({"MKL_CBWR": "AVX2"}, 2),
    "oneDNN AVX2 only": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "xib's pins, 2 threads": (PINS, 2),
    "xib's pins, 2 threads (again)": (PINS, 2),
    "xib's pins, 1 thread": (PINS, 1),
}

CHILD = r"""
import hashlib, json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
torch.use_deterministic_algorithms(True, warn_only=True)
torch.manual_seed(0)
block = torch.nn.Sequential(
    torch.nn.Conv1d(64, 64, 3, padding=1),
)
layer = torch.nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True, activation="gelu")
head = torch.nn.Linear(64, 64)
params = [*block.parameters(), *layer.parameters(), *head.parameters()]
opt = torch.optim.AdamW(params, lr=1e-3)
x = torch.randn(32, 48, 64)
y = torch.randn(32, 48, 64)
for _ in range(30):
    h = block(x.transpose(1, 2)).transpose(1, 2)
    loss = torch.nn.functional.mse_loss(head(layer(h)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params)).hexdigest()
print(json.dumps({"hash": digest[:16], "loss": float(loss), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def main() -> None:
    base = {k: v for k, v in os.environ.items() if k not in PINS}
    rows = []
    for name, (env, threads) in SETTINGS.items():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(threads)],
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((name, result))
        print(f"| {name} | {result['capability']} | {result['hash']} | {result['loss']:.9f} |", flush=True)
    print(json.dumps(dict(rows)))


if __name__ == "__main__":
    main()
