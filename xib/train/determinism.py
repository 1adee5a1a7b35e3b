"""What makes xib's figures depend on the machine, and what is pinned (README "Reproducibility").

Same seed, same machine: every stage seeds its generators from conf, so two runs give the same
bytes (tests/test_determinism.py trains twice and compares the projections). Across machines a
float result also depends on the order of its additions, and that order depends on
- the thread count: a matrix product or reduction split over N threads adds its partial sums in
  an N-dependent order, and torch's default is one thread per core. Pinned: every process that
  computes (alignment workers, feature caching, encoder and LLM pre-training, evaluation) sets its
  torch threads from conf, never from the core count;
- the CPU's vector width: ATen's own kernels are compiled for several instruction sets and use the
  widest the CPU has (`ATEN_CPU_CAPABILITY`: default, avx2, avx512), MKL picks its code path
  by CPU (`MKL_CBWR`) and oneDNN its (`ONEDNN_MAX_CPU_ISA`); an AVX-512 machine and an AVX2 one
  sum in different lanes. Pinned (x86) by `train.determinism` to AVX2, which nearly every x86
  server has: each variable is read when its library first computes, so `apply` sets it at the
  start of a process and `pinned_env` hands it to the alignment workers' environment;
- nondeterministic kernels: `torch.use_deterministic_algorithms` (warn-only: on CPU the few ops it
  flags are not used by xib);
- parallel alignment runs: each modality trains in its own processes with its own pinned threads,
  and two gloo ranks all-reduce in a fixed order, so running them side by side changes wall time
  only.
What is not pinned: other CPU architectures (ARM ignores the x86 pins), other torch/MKL builds.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xib.config import XibConfig

# conf key (train.determinism.<key>) -> the environment variable its library reads
ISA_VARIABLES = {
    "cpu_capability": "ATEN_CPU_CAPABILITY",
    "mkl_cbwr": "MKL_CBWR",
    "onednn_max_cpu_isa": "ONEDNN_MAX_CPU_ISA",
}


def pinned_env(cfg: XibConfig) -> dict[str, str]:
    """The instruction-set pins of `cfg.train.determinism` as environment variables (empty: unpinned)."""
    dcfg = cfg.train.determinism
    return {var: str(getattr(dcfg, key)) for key, var in ISA_VARIABLES.items() if str(getattr(dcfg, key))}


def apply(cfg: XibConfig, threads: int) -> None:
    """Pin this process: instruction sets (before its first computation), `threads`, deterministic ops.

    A variable already set in the environment wins, so a user can still unpin or pin otherwise.
    """
    import torch

    for var, value in pinned_env(cfg).items():
        os.environ.setdefault(var, value)
    torch.set_num_threads(max(int(threads), 1))
    if cfg.train.determinism.algorithms:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also NaN-fills every new tensor (torch's guard against reading
        # uninitialised memory); that fill was a third of an alignment step's time (benchmarks/train.md)
        # a property of torch.utils.deterministic's module class, which torch's stubs do not declare
        torch.utils.deterministic.fill_uninitialized_memory = bool(  # type: ignore[attr-defined]
            cfg.train.determinism.fill_uninitialized_memory
        )


def describe() -> dict[str, Any]:
    """What this process runs with: recorded beside the figures so a difference can be traced."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        **{var: os.environ.get(var, "") for var in ISA_VARIABLES.values()},
    }
