"""Gate flow: register the candidate, compare with the champion, promote or refuse, notify."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.common import project_root, stage_task
from xib.registry.registry import GATE_REFUSED
from xib.stages import StageFailed


@flow(name="xib-gate", log_prints=True)
def gate_flow(overrides: list[str] | None = None, force: bool = True) -> dict:
    overrides = list(overrides or [])
    root = project_root(overrides)
    # A gate decision is never cached: the champion it compares against may have changed.
    try:
        stage_task(overrides)("gate", overrides, root, force)
    except StageFailed as err:
        if err.status != GATE_REFUSED:
            raise
        # a refused candidate is an outcome, not a crash: decision.json says why
    decision = json.loads((Path(root) / "artifacts/gate/decision.json").read_text())
    notify(decision)
    return decision


def notify(decision: dict) -> None:
    """The decision, readable by a person, as a Prefect artifact (shown in the UI) and in the log."""
    lines = [f"# Gate: {decision.get('decision', '?')}", ""]
    lines += [f"- {reason}" for reason in decision.get("reasons", [])]
    text = "\n".join(lines)
    print(text)
    create_markdown_artifact(key="xib-gate-decision", markdown=text, description="promotion gate")
