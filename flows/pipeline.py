"""The whole pipeline: data, alignment, evaluation, gate. `make demo` runs this on the embedded default."""

from __future__ import annotations

from prefect import flow

from flows.align import align_flow
from flows.data import data_flow
from flows.evaluate import evaluate_flow
from flows.gate import gate_flow


@flow(name="xib-pipeline", log_prints=True)
def pipeline_flow(overrides: list[str] | None = None, force: bool = False) -> dict:
    overrides = list(overrides or [])
    data_flow(overrides, force)
    align_flow(overrides, force)
    evaluate_flow(overrides, force)
    return gate_flow(overrides)


if __name__ == "__main__":  # `xib demo` runs `python -m flows.pipeline [overrides]`
    import sys

    from xib.errors import XibError

    try:
        pipeline_flow(sys.argv[1:])
    except XibError as err:
        print(f"xib demo: {err}", file=sys.stderr)
        raise SystemExit(1) from None
