"""Typed config of evaluation (conf/eval/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    split: str = "test"
    batch_size: int = 32
    max_items_per_task: int = 200
    discrn_scoring: list[str] = field(default_factory=lambda: ["generate", "logits"])
    baselines: list[str] = field(default_factory=lambda: ["oracle_caption", "predicted_caption", "chance"])
    prompts: dict[str, str] = field(
        default_factory=lambda: {
            "caption": "A short caption:",
            "qa": "Question: {question} Short answer:",
            "classify": "What is this? Answer:",
        }
    )
