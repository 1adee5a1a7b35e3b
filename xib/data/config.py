"""Typed config of the data stages (conf/data/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class WorldConfig:
    seed: int = 0
    items_per_modality: int = 2000
    entities_per_kind: int = 40
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    image_size: int = 32
    sample_rate: int = 16000
    audio_seconds: float = 2.0
    points: int = 8192
    video_frames: int = 5
    video_size: int = 32
    video_fps: int = 5
    shard_items: int = 1000
    workers: int = 2


@dataclass
class CorpusConfig:
    seed: int = 1
    fact_lines: int = 20000
    comparison_lines: int = 40000


@dataclass
class ValidateConfig:
    max_media_bytes: int = 5_000_000
    sample_rate: int = 16000
    min_audio_seconds: float = 0.5
    max_audio_seconds: float = 30.0
    points: int = 8192
    min_frames: int = 5
    max_frames: int = 64
    min_image_side: int = 8
    max_image_side: int = 4096


@dataclass
class InstructConfig:
    seed: int = 2
    generator: str = "templates"  # templates | llm
    generator_model: str = ""  # local HF dir for generator=llm
    fuzzy_threshold: float = 90.0
    qa_per_item: int = 1


@dataclass
class DiscrnConfig:
    seed: int = 3
    pairs: list[str] = field(default_factory=lambda: ["image_pc", "audio_video"])
    examples_per_pair: int = 400
    candidate_sample: int = 32
    hard_top_k: int = 4
    split: str = "test"


@dataclass
class DataConfig:
    source: str = "world"  # world | ingest
    world: WorldConfig = field(default_factory=WorldConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    instruct: InstructConfig = field(default_factory=InstructConfig)
    discrn: DiscrnConfig = field(default_factory=DiscrnConfig)
