"""The promotion gate: a candidate's metrics against the policy (conf/gate) and the champion's metrics.

Rules, each checked per metric and reported in words:
- floors: a metric named in `floors` must be present and at least its floor;
- regression: on every compared metric the champion has, the candidate may fall at most
  `tolerance` below it (`tolerances` overrides per metric pattern);
- no drop: metrics matching `no_drop` (DisCRn) may not fall below the champion at all;
- a compared metric the champion has and the candidate lacks refuses the candidate.
The candidate is promoted only when every check passes.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xib.registry.config import GateConfig


@dataclass
class Check:
    metric: str
    rule: str  # floor | regression | no_drop | missing
    passed: bool
    reason: str
    candidate: float | None = None
    reference: float | None = None


@dataclass
class Decision:
    promote: bool
    checks: list[Check] = field(default_factory=list)
    champion_version: str | None = None
    candidate_version: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if not self.checks:
            return "promote: no rule applies (no floors, no champion)"
        if self.promote:
            return f"promote: all {len(self.checks)} checks passed"
        return "refuse: " + "; ".join(c.reason for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


def _matches(metric: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(metric, p) for p in patterns)


def _tolerance(metric: str, default: float, overrides: Mapping[str, float]) -> float:
    for pattern, tol in overrides.items():
        if fnmatch.fnmatchcase(metric, pattern):
            return float(tol)
    return float(default)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    floors: Mapping[str, float],
    tolerance: float,
    no_drop: Sequence[str],
    compare: Sequence[str] = ("*",),
    tolerances: Mapping[str, float] | None = None,
    champion_version: str | None = None,
    candidate_version: str | None = None,
) -> Decision:
    """Judge `candidate` against the floors and (when there is one) the champion's metrics."""
    tolerances = dict(tolerances or {})
    checks = [_floor_check(metric, candidate.get(metric), floor) for metric, floor in sorted(floors.items())]
    if champion:
        for metric in sorted(champion):
            if not _matches(metric, compare) and not _matches(metric, no_drop):
                continue
            checks.append(
                _champion_check(
                    metric, candidate.get(metric), float(champion[metric]), no_drop, tolerance, tolerances
                )
            )
    return Decision(
        promote=all(c.passed for c in checks),
        checks=checks,
        champion_version=champion_version,
        candidate_version=candidate_version,
    )


def _floor_check(metric: str, value: float | None, floor: float) -> Check:
    """The candidate's `metric` against its floor (missing or NaN fails)."""
    if value is None or math.isnan(value):
        return Check(metric, "floor", False, f"{metric}: missing, floor is {floor:.4g}", None, floor)
    if value < floor:
        return Check(
            metric, "floor", False, f"{metric}: {value:.4g} is below the floor {floor:.4g}", value, floor
        )
    return Check(metric, "floor", True, f"{metric}: {value:.4g} meets the floor {floor:.4g}", value, floor)


def _champion_check(
    metric: str,
    value: float | None,
    ref: float,
    no_drop: Sequence[str],
    tolerance: float,
    tolerances: Mapping[str, float],
) -> Check:
    """The candidate's `metric` against the champion's `ref`: missing, may-not-drop, or within tolerance."""
    if value is None or math.isnan(value):
        return Check(
            metric, "missing", False, f"{metric}: champion has {ref:.4g}, candidate lacks it", None, ref
        )
    if _matches(metric, no_drop):
        ok = value >= ref
        verb = "holds" if ok else "drops"
        return Check(
            metric,
            "no_drop",
            ok,
            f"{metric}: {value:.4g} vs champion {ref:.4g}, {verb} (may not drop)",
            value,
            ref,
        )
    tol = _tolerance(metric, tolerance, tolerances)
    ok = value >= ref - tol
    delta = value - ref
    if ok:
        reason = f"{metric}: {value:.4g} vs champion {ref:.4g} ({delta:+.4g}, within tolerance {tol:.4g})"
    else:
        reason = f"{metric}: {value:.4g} vs champion {ref:.4g} ({delta:+.4g}, regresses beyond {tol:.4g})"
    return Check(metric, "regression", ok, reason, value, ref)


def decide_with_policy(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gate_cfg: GateConfig,
    champion_version: str | None = None,
    candidate_version: str | None = None,
) -> Decision:
    """`decide` with the policy taken from the composed config's `gate` section."""
    return decide(
        candidate,
        champion,
        floors=dict(gate_cfg.floors),
        tolerance=gate_cfg.tolerance,
        no_drop=list(gate_cfg.no_drop),
        compare=list(gate_cfg.compare),
        tolerances=dict(gate_cfg.tolerances),
        champion_version=champion_version,
        candidate_version=candidate_version,
    )
