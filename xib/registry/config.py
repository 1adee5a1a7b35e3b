"""Typed config of the promotion gate and the model registry (conf/gate/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class GateConfig:
    model_name: str = "xib"
    floors: dict[str, float] = field(default_factory=dict)  # metric -> minimum
    tolerance: float = 0.02  # largest allowed drop against the champion, any compared metric
    tolerances: dict[str, float] = field(default_factory=dict)  # metric pattern -> its own tolerance
    no_drop: list[str] = field(default_factory=lambda: ["discrn/image_pc", "discrn/audio_video"])
    # Metrics compared with the champion (fnmatch patterns); baselines that do not depend on the
    # candidate's projections are reported but not gated.
    compare: list[str] = field(
        default_factory=lambda: ["caption/*/cider", "qa/*/accuracy", "classify/*/accuracy", "discrn/*"]
    )
    auto_promote: bool = False  # `xib gate` promotes a passing candidate itself
    # Promotions hold a lock: an advisory lock in this PostgreSQL database (`postgresql://...`; empty:
    # the tracking store itself when it is PostgreSQL), else this lock file (one host, SQLite).
    lock_uri: str = ""
    lock_file: str = "${paths.artifacts}/registry/promote.lock"
    lock_timeout_s: float = 60.0
    # Bundle the frozen LLM and encoders into the registered model (small demo models), or only
    # reference them by path and fingerprint (7B).
    bundle_frozen: bool = True
