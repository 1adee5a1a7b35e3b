"""Evaluation: single-modality benchmarks, DisCRn and its baselines (`run_eval`)."""

from xib.eval.run import run_eval

__all__ = ["run_eval"]
