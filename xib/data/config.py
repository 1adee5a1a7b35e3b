"""Typed config of the data stages (conf/data/*.yaml)."""

from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")
TASKS = ("caption", "qa", "classify")  # instruction tasks
GENERATORS = ("templates", "llm")  # instruction QA generators
# DisCRn: every unordered pair of the four modalities; the paper tests the first two (image-3D on
# Objaverse, audio-video on AudioCaps). The names follow `xib.data.corpus.parse_pair`, whose
# comparisons cover every ordered pair, so the demo LLM reads all six alike.
PAIRS = {
    "image_pc": ("image", "pc"),
    "audio_video": ("audio", "video"),
    "image_audio": ("image", "audio"),
    "image_video": ("image", "video"),
    "pc_audio": ("pc", "audio"),
    "pc_video": ("pc", "video"),
}
INGEST_FORMATS = {"coco": "image", "audiocaps": "audio", "cap3d": "pc", "msrvtt": "video"}


@dataclass
class WorldConfig:
    seed: int = 0
    train_seed: int = 0  # redraws the training items' renders only (0 = as `seed`); val/test stay put
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
    chunk_items: int = 50  # items per task a worker renders at once
    # per-item jitter of the renders (xib/data/render.py)
    colour_jitter: float = 12.0  # +- per RGB channel, shape and background
    shape_radius: float = 0.3  # image shape radius, fraction of the image side
    video_shape_radius: float = 0.2  # video shape radius, fraction of the frame side
    scale_jitter: float = 0.15  # +- relative
    position_jitter: float = 0.12  # +- fraction of the image side
    angle_jitter_deg: float = 12.0
    image_noise_std: float = 4.0  # pixel noise, image and video
    pc_scale_jitter: float = 0.06  # +- relative; sizes are 0.35 / 0.65 / 1.0 apart
    pc_noise_std: float = 0.005
    pc_shift: float = 0.05
    pitch_jitter: float = 0.06  # +- relative
    volume: float = 0.6
    volume_jitter: float = 0.25  # +- relative
    audio_noise_std: float = 0.01


@dataclass
class CorpusConfig:
    """The demo LLM's pre-training text (xib/data/corpus.py); lines are sampled, then shuffled."""

    seed: int = 1
    fact_lines: int = 4000
    caption_lines: int = 12000
    knowledge_lines: int = 0  # attributes the comparisons ask about, of kinds and of captions (0: none)
    # Words for a kind's speed (0..3) and loudness (1..3), indexed by the value.
    speed_words: list[str] = field(default_factory=lambda: ["still", "slow", "fast", "very fast"])
    loudness_words: list[str] = field(default_factory=lambda: ["silent", "quiet", "loud", "very loud"])
    instruction_lines: int = 12000
    comparison_lines: int = 72000  # whole passes over every seen comparison keep answers balanced
    modalities: list[str] = field(default_factory=lambda: ["image", "pc", "audio", "video"])
    # Ordered modality pairs the comparisons cover (m1 first); both orders of each pair listed.
    comparison_pairs: list[str] = field(
        default_factory=lambda: [
            *("image_pc", "pc_image", "audio_video", "video_audio", "image_audio", "audio_image"),
            *("image_video", "video_image", "pc_audio", "audio_pc", "pc_video", "video_pc"),
        ]
    )
    heldout_kind_pairs: int = 12  # unordered kind pairs never compared in the corpus (the ceiling's test)
    caption_templates: list[str] = field(
        default_factory=lambda: ["{input} is {kind}.", "{input} shows {kind}."]
    )


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
    max_video_side: int = 4096
    min_video_seconds: float = 0.1
    max_video_seconds: float = 600.0
    max_abs_coordinate: float = 1000.0  # point-cloud coordinates beyond this are a unit/format error
    min_caption_chars: int = 1
    max_caption_chars: int = 2000
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    check_checksum: bool = True
    html_report: bool = True


@dataclass
class LimitsConfig:
    """What a source file may hold (xib/data/rules.py), checked from headers before anything is decoded.

    Shared by `xib ingest`, `xib validate` and the released DisCRn converter (one set of media rules).
    """

    max_media_bytes: int = 200_000_000  # a source media file on disk
    max_image_pixels: int = 40_000_000  # width x height
    max_audio_seconds: float = 600.0
    max_audio_samples: int = 100_000_000  # frames x channels
    max_audio_channels: int = 8
    min_sample_rate: int = 4000
    max_sample_rate: int = 192_000
    max_video_frames: int = 3000
    max_video_pixels: int = 8_300_000  # one frame (4K UHD)
    max_video_seconds: float = 600.0
    max_points: int = 2_000_000
    max_array_bytes: int = 256_000_000  # one NPY array / NPZ member, uncompressed
    max_annotation_bytes: int = 2_000_000_000
    max_json_depth: int = 32
    max_json_integer: int = 9_007_199_254_740_991  # 2**53 - 1: what every JSON reader keeps exactly
    invisible_chars: str = "strip"  # strip | refuse: bidirectional and zero-width characters in captions


@dataclass
class IngestConfig:
    format: str = ""  # coco | audiocaps | cap3d | msrvtt
    # the annotation file (COCO/MSR-VTT JSON, AudioCaps/Cap3D CSV); for AudioCaps also the folder
    # holding its train.csv, val.csv and test.csv (one data set, each file's split kept)
    path: str = ""
    media_dir: str = ""  # folder of the media files; empty: the annotation file's folder
    # auto: the source's own split where it has one (MSR-VTT `split`, AudioCaps train/val/test.csv),
    # else hash | hash (by source group, fractions below) | source | train | val | test
    split: str = "auto"
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: int = 0  # salts the split hash
    on_missing: str = "skip"  # skip | error: a row whose media file is absent
    limit: int = 0  # 0: every row
    shard_items: int = 1000
    sample_rate: int = 16000  # audio is resampled to this (0: keep)
    points: int = 8192  # point clouds are resampled to this many points (0: keep)
    video_frames: int = 0  # video is re-encoded to this many evenly spaced frames (0: keep)
    video_size: int = 0  # and resized to this square side (0: keep, rounded down to even)
    video_fps: int = 5  # frame rate written when re-encoding
    # AudioCaps media file name; looked for in `<media_dir>/<split>/` and then `<media_dir>/`
    audiocaps_pattern: str = "{youtube_id}_{start_time}.wav"
    # Cap3D point clouds, first found wins (the release: objaverse_pc_parallel/<uid>/<uid>_8192.npz)
    cap3d_patterns: list[str] = field(
        default_factory=lambda: [
            "objaverse_pc_parallel/{uid}/{uid}_8192.npz",
            "{uid}/{uid}_8192.npz",
            "{uid}.npz",
            "{uid}.npy",
        ]
    )
    # Cap3D rendered views also ingested as image items where present ([]: none)
    cap3d_views: list[int] = field(default_factory=list)
    cap3d_view_pattern: str = "compressed_imgs_view{view}/Cap3D_imgs_view{view}/{uid}_{view}.jpeg"


@dataclass
class InstructLLMConfig:
    """generator=llm: the paper's three prompts (flan-t5-xxl there) over a local HF model directory."""

    answer_prompt: str = "Generate a potential answer word from the following text: {caption}"
    question_prompt: str = (
        "Generate a question for the answer using the context. Context: {caption} Answer: {answer} Question:"
    )
    round_trip_prompt: str = (
        "Answer the question given the context. Context: {caption} Question: {question} Answer:"
    )
    batch_size: int = 16
    max_input_tokens: int = 256
    max_new_tokens: int = 20
    device: str = "cpu"  # cpu | cuda | cuda:0 ...
    dtype: str = "float32"  # float32 | bfloat16 | float16


@dataclass
class InstructConfig:
    seed: int = 2
    generator: str = "templates"  # templates (world ground truth) | llm (generator_model)
    generator_model: str = ""  # local HF dir (seq2seq or causal LM + tokenizer) for generator=llm
    fuzzy_threshold: float = 90.0  # keep a QA pair when both fuzzy scores exceed this (paper: 90)
    qa_per_item: int = 1
    min_answer_chars: int = 2  # shorter generated answers are discarded (fuzzy scores are trivial on them)
    modalities: list[str] = field(default_factory=lambda: ["image", "pc", "audio", "video"])
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    tasks: list[str] = field(default_factory=lambda: ["caption", "qa", "classify"])
    # What each modality's captions show, asked about by single-input QA (templates generator).
    qa_attributes: dict[str, list[str]] = field(default_factory=dict)
    # The attribute a modality is classified by (ModelNet40/ESC-50 style); candidates: every value.
    classify_attribute: dict[str, str] = field(default_factory=dict)
    questions: dict[str, list[str]] = field(default_factory=dict)  # attribute -> question wordings
    # task -> modality -> instruction templates, one sampled per record; qa templates hold {question}.
    templates: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    llm: InstructLLMConfig = field(default_factory=InstructLLMConfig)


@dataclass
class DiscrnConfig:
    seed: int = 3
    pairs: list[str] = field(default_factory=lambda: ["image_pc", "audio_video", "image_audio", "image_video", "pc_audio", "pc_video"])
    examples_per_pair: int = 400  # a multiple of 4: labels and modality orders exactly balanced
    candidate_sample: int = 32  # random candidates per anchor, before picking among the most similar
    hard_top_k: int = 4  # the partner is drawn among this many most similar applicable candidates
    max_attempts_per_example: int = 50
    split: str = "test"  # the reported figures
    select_split: str = "val"  # built the same way, to choose recipes on ("" = none; world source only)
    source: str = "world"  # world (built from manifests) | released (X-InstructBLIP DisCRn JSON files)
    released: dict[str, str] = field(default_factory=lambda: {"image_pc": "", "audio_video": ""})
    # Input order of the released files (LAVIS: objaverse [image, pc], audiocaps [video, audio]).
    released_modalities: dict[str, list[str]] = field(
        default_factory=lambda: {"image_pc": ["image", "pc"], "audio_video": ["video", "audio"]}
    )
    media_roots: dict[str, str] = field(
        default_factory=lambda: {"image": "", "pc": "", "audio": "", "video": ""}
    )
    image_view: int = 2  # Cap3D rendered view used for objaverse images
    pc_points: int = 8192  # objaverse point-cloud file suffix
    require_media: bool = False  # released: drop examples whose media files are missing
    # released: where each input's medium lies under media_roots ({id}, {start}, {view}, {points})
    released_patterns: dict[str, str] = field(
        default_factory=lambda: {
            "image": "compressed_imgs_view{view}/Cap3D_imgs_view{view}/{id}_{view}.jpeg",
            "pc": "{id}/{id}_{points}.npz",
            "audio": "{id}_{start}.flac",
            "video": "{id}_{start}.mp4",
        }
    )


@dataclass
class DataConfig:
    source: str = "world"  # world | ingest
    world: WorldConfig = field(default_factory=WorldConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    instruct: InstructConfig = field(default_factory=InstructConfig)
    discrn: DiscrnConfig = field(default_factory=DiscrnConfig)
