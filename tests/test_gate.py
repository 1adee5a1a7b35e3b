"""The promotion gate's policy: floors, tolerated regressions, DisCRn may not drop."""

from __future__ import annotations

from xib.config import load_config
from xib.registry.gate import decide, decide_with_policy

CHAMPION = {
    "caption/image/cider": 2.0,
    "qa/image/accuracy": 0.70,
    "discrn/image_pc": 0.80,
    "discrn/audio_video": 0.75,
    "baseline/oracle_caption/image_pc": 0.9,
}
POLICY = dict(
    floors={"discrn/image_pc": 0.6},
    tolerance=0.02,
    tolerances={"caption/*/cider": 0.1},
    no_drop=["discrn/image_pc", "discrn/audio_video"],
    compare=["caption/*/cider", "qa/*/accuracy", "discrn/*"],
)


def test_gate_refuses_a_planted_regression_with_reasons() -> None:
    candidate = dict(CHAMPION, **{"qa/image/accuracy": 0.60})
    decision = decide(candidate, CHAMPION, **POLICY)
    assert not decision.promote
    [failure] = decision.failures
    assert failure.metric == "qa/image/accuracy" and failure.rule == "regression"
    assert "0.6 vs champion 0.7" in failure.reason and "regresses" in failure.reason


def test_gate_refuses_any_discrn_drop_even_within_tolerance() -> None:
    candidate = dict(CHAMPION, **{"discrn/audio_video": 0.745})
    decision = decide(candidate, CHAMPION, **POLICY)
    assert not decision.promote
    assert [c.metric for c in decision.failures] == ["discrn/audio_video"]
    assert "may not drop" in decision.summary()


def test_gate_promotes_a_planted_improvement_and_tolerates_noise() -> None:
    candidate = dict(CHAMPION)
    candidate.update({"discrn/image_pc": 0.9, "qa/image/accuracy": 0.69, "caption/image/cider": 1.95})
    candidate["baseline/oracle_caption/image_pc"] = 0.1  # not a compared metric: reported, not gated
    decision = decide(candidate, CHAMPION, **POLICY)
    assert decision.promote, decision.summary()
    assert {c.metric for c in decision.checks} >= {
        "discrn/image_pc",
        "qa/image/accuracy",
        "caption/image/cider",
    }
    assert all(c.reason for c in decision.checks)


def test_gate_floors_and_missing_metrics() -> None:
    below = decide({"discrn/image_pc": 0.5}, None, **POLICY)
    assert not below.promote and "below the floor" in below.summary()
    first = decide({"discrn/image_pc": 0.7}, None, **POLICY)
    assert first.promote
    lacking = {k: v for k, v in CHAMPION.items() if k != "discrn/audio_video"}
    decision = decide(lacking, CHAMPION, **POLICY)
    assert not decision.promote and "candidate lacks it" in decision.summary()


def test_gate_policy_comes_from_conf() -> None:
    cfg = load_config(["gate.tolerance=0.5", "~gate.floors"])
    candidate = dict(CHAMPION, **{"qa/image/accuracy": 0.30})
    assert decide_with_policy(candidate, CHAMPION, cfg.gate).promote
    cfg = load_config(["gate.tolerance=0.0", "~gate.floors"])
    assert not decide_with_policy(candidate, CHAMPION, cfg.gate).promote


def test_default_floors_refuse_a_first_candidate_at_chance_and_pass_the_demo_figures() -> None:
    """conf/gate's floors judge a first candidate (no champion): chance and the paper-faithful recipe's
    DisCRn are refused, the default recipe's measured figures (README, "Results") pass."""
    gate = load_config([]).gate
    single = {f"{task}/{m}/{name}": 0.99 for m in ("image", "pc", "audio", "video")
              for task, name in (("caption", "exact_match"), ("qa", "accuracy"), ("classify", "accuracy"))}  # fmt: skip
    default = {**single, "discrn/image_pc": 0.963, "discrn/audio_video": 0.983,
               "discrn/image_pc/image_first": 0.965, "discrn/image_pc/pc_first": 0.960,
               "discrn/audio_video/audio_first": 0.985, "discrn/audio_video/video_first": 0.980}  # fmt: skip
    paper = {**single, "discrn/image_pc": 0.603, "discrn/audio_video": 0.475,
             "discrn/image_pc/image_first": 0.580, "discrn/image_pc/pc_first": 0.625,
             "discrn/audio_video/audio_first": 0.490, "discrn/audio_video/video_first": 0.460}  # fmt: skip
    chance = {k: (0.5 if k.startswith("discrn") else 0.06) for k in default}
    assert decide_with_policy(default, None, gate).promote
    for refused in (paper, chance):
        decision = decide_with_policy(refused, None, gate)
        assert not decision.promote
        assert {c.metric for c in decision.failures} >= {"discrn/image_pc", "discrn/audio_video"}
    narrowed = {k: v for k, v in default.items() if not k.startswith("discrn/audio_video")}
    assert "discrn/audio_video: missing" in decide_with_policy(narrowed, None, gate).summary()
