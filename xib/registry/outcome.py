"""How a pipeline run ends for its operator: with a champion to serve, or with the one command to run next."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xib.config import XibConfig

ASK = 'xib ask --model champion --input <image.png> --input <sound.wav> "which of the two is alive? first or second"'


def settle(cfg: XibConfig, decision: Mapping[str, Any]) -> list[str]:
    """After the gate: promote a passing candidate when there is no champion yet (a first run), then
    say where things stand in a few lines ending with the exact next command."""
    from xib.registry.registry import champion_state, promote_version

    version = str(decision.get("version") or "")
    state = champion_state(cfg)
    champion = state["champion"]
    passed = decision.get("decision") == "promote"
    if passed and champion is None and version:
        champion, _ = promote_version(cfg, version)  # the gate's verdict and expected champion are checked
        return [f"champion: version {champion} (the first to pass the gate)", f"next: {ASK}"]
    if passed and champion == version:
        return [f"champion: version {champion}", f"next: {ASK}"]
    if passed:
        return [
            f"champion: version {champion}; version {version} passed the gate and waits as challenger",
            f"next: xib promote --version {version}",
        ]
    failing = [str(r) for r in decision.get("reasons", [])][:1]
    why = f" ({failing[0]})" if failing else ""
    if champion is not None:
        return [
            f"champion: version {champion}, unchanged; version {version} was refused{why}",
            f"next: {ASK}",
        ]
    return [
        f"no champion: version {version} was refused by the gate{why}",
        f"next: xib promote --version {version} --force   # serve it anyway; the gate's floors are in conf/gate",
    ]
