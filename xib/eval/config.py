"""Typed config of evaluation (conf/eval/*.yaml)."""

from dataclasses import dataclass, field


@dataclass
class DiscrnEvalConfig:
    """How generated DisCRn answers are read: synonyms of "first" and "second" and modality names."""

    pairs: list[str] = field(
        default_factory=lambda: [
            "image_pc",
            "audio_video",
            "image_audio",
            "image_video",
            "pc_audio",
            "pc_video",
        ]
    )
    # 0 = every item. DisCRn scores each input order on its own: at 200 items a pair (about 100 an
    # order) one standard error is 0.03, at 400 it is 0.02.
    max_items: int = 0
    first_words: list[str] = field(default_factory=lambda: ["first", "1st", "left", "(a)"])
    second_words: list[str] = field(default_factory=lambda: ["second", "2nd", "right", "(b)"])
    modality_names: dict[str, list[str]] = field(
        default_factory=lambda: {
            "image": ["image", "picture", "photo"],
            "pc": ["3d", "point cloud", "3d model"],
            "audio": ["audio", "sound"],
            "video": ["video"],
        }
    )
    answers: list[str] = field(default_factory=lambda: ["first", "second"])  # logit scoring candidates


@dataclass
class AblationConfig:
    """`xib ablate`: variants trained and evaluated side by side (each a list of overrides)."""

    variants: dict[str, list[str]] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=lambda: ["image", "pc", "audio", "video"])
    report: str = "benchmarks/ablations.md"
    workdir: str = "${paths.artifacts}/ablations"


@dataclass
class SeedsConfig:
    """`xib seeds`: the whole pipeline per seed and recipe (xib/pipeline/seeds.py)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Set to each seed; none of them moves the val/test splits or the DisCRn and instruction files.
    seed_keys: list[str] = field(
        default_factory=lambda: ["seed", "model.encoder_pretrain.seed", "data.world.train_seed"]
    )
    recipes: dict[str, list[str]] = field(default_factory=lambda: {"default": []})  # first: the shared stages
    # A finished project root (e.g. `make demo`'s) that IS the first seed's first recipe: its
    # metrics are read and its data and caches linked; nothing is rerun there ("" = run it).
    adopt_first: str = ""
    report: str = "benchmarks/seeds.md"
    workdir: str = "${paths.artifacts}/seeds"


@dataclass
class EvalConfig:
    split: str = "test"
    batch_size: int = 32
    max_items_per_task: int = 200  # 0 = all
    modalities: list[str] = field(default_factory=lambda: ["image", "pc", "audio", "video"])
    tasks: list[str] = field(default_factory=lambda: ["caption", "qa", "classify"])
    classify_scoring: list[str] = field(default_factory=lambda: ["loss", "generate"])
    discrn_scoring: list[str] = field(default_factory=lambda: ["generate", "logits"])
    baselines: list[str] = field(
        default_factory=lambda: ["oracle_caption", "predicted_caption", "hybrid", "chance"]
    )
    discrn: DiscrnEvalConfig = field(default_factory=DiscrnEvalConfig)
    prompts: dict[str, str] = field(
        default_factory=lambda: {
            "caption": "A short caption:",
            "qa": "Question: {question} Short answer:",
            "classify": "What is this? Answer:",
        }
    )
    output: str = "${paths.artifacts}/eval"  # metrics.json, predictions.json, plots/
    min_free_mb: float = 50.0  # free space the output's disk must have before the evaluation starts
    plots: bool = True
    mlflow_run_id: str = ""  # log metrics and plots to this MLflow run when set
    threads: int = 2
    ablate: AblationConfig = field(default_factory=AblationConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
