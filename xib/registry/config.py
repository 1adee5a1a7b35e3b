"""Typed config of the promotion gate and the model registry (conf/gate/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class GateConfig:
    model_name: str = "xib"
    floors: dict[str, float] = field(default_factory=dict)  # metric -> minimum
    tolerance: float = 0.02  # largest allowed drop against the champion, any metric
    no_drop: list[str] = field(default_factory=lambda: ["discrn/image_pc", "discrn/audio_video"])
