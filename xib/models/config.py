"""Typed config of the model (conf/model/*.yaml): LLM, encoders, projections, prompts, generation.

Defaults equal the embedded default (conf/model/demo.yaml composed); tests/test_config.py keeps them so.
"""

from dataclasses import dataclass, field

LLM_DTYPES = ("float32", "bfloat16", "float16")
PROJECTION_KINDS = ("qformer", "linear")
ENCODER_FAMILIES = ("clip_vision", "blip2_vision", "ast", "pointbert", "beats")


@dataclass
class LLMConfig:
    path: str = "${paths.artifacts}/bootstrap/llm"  # a save_pretrained directory (model + tokenizer)
    dtype: str = "float32"
    # Special tokens set on the tokenizer after loading, as the reference does for Vicuna v1.1
    # (LAVIS: pad `[PAD]` added, bos/eos/unk `</s>`); a token new to the vocabulary gets a zero row.
    special_tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class EncoderConfig:
    family: str = "clip_vision"  # clip_vision | blip2_vision (EVA ViT-g of BLIP-2) | ast | pointbert
    path: str = ""  # local save_pretrained / safetensors directory; empty or missing = build from `arch`
    arch: dict[str, int] = field(default_factory=dict)  # sizes for building from config
    views: int = 1  # frames (video) or segments (audio) each projected on its own
    segment_seconds: float = 1.0  # audio only
    seed: int = 0  # random init when built from `arch` (so the fingerprint is reproducible)
    dtype: str = "float32"  # weights dtype; features are returned as float32
    feature_layer: int = -1  # hidden state used as features (-2: BLIP-2's penultimate EVA layer)
    mean: list[float] = field(default_factory=lambda: [0.48145466, 0.4578275, 0.40821073])  # input norm
    std: list[float] = field(default_factory=lambda: [0.26862954, 0.26130258, 0.27577711])
    sample_rate: int = 16000  # audio: expected input rate
    pc_normalize: str = "center"  # pc: none | center | unit_sphere (ULIP; loses the size a pc shows)


@dataclass
class ProjectionConfig:
    kind: str = "qformer"  # qformer | linear
    num_query_tokens: int = 6
    # Per-modality K where it should differ (soft tokens about as many as a caption's tokens: the
    # positions past the caption are not anchored and confuse a small LLM); the rest use num_query_tokens.
    num_query_tokens_by_modality: dict[str, int] = field(default_factory=dict)
    qformer_hidden: int = 64
    qformer_layers: int = 2
    qformer_heads: int = 4
    qformer_intermediate: int = 128
    cross_attention_frequency: int = 1
    max_instruction_tokens: int = 32
    dropout: float = 0.1  # Q-Former hidden and attention dropout (BERT's default, as in the paper)
    linear_hidden: int = 64  # `linear` kind: width d of the K x d tokens before the LLM projection
    # Ids the instruction enters the Q-Former with: "" = the LLM tokenizer's ids taken modulo
    # `qformer_vocab_size` (the demo), or a local tokenizer directory (bert-base-uncased for BLIP-2 weights).
    qformer_tokenizer: str = ""
    qformer_vocab_size: int = 0  # 0 = the size of whichever tokenizer feeds the Q-Former
    init_from: str = ""  # local BLIP-2/InstructBLIP checkpoint dir (HF layout: qformer.*, query_tokens, ...)
    # Modalities whose Q-Former cross-attention is not loaded from `init_from` (the paper: the encoder
    # width differs from the image encoder's, so it trains from scratch).
    init_skip_cross_attention: list[str] = field(default_factory=lambda: ["pc", "audio"])
    # false (the paper): each view (video frame, audio segment) is projected on its own and the
    # input's soft tokens are V x K; true: the views' encoder tokens are joined, so the projection
    # reads all of them at once and the input is K soft tokens, as long as a single image's.
    join_views: bool = True


@dataclass
class PromptConfig:
    use_cues: bool = True  # a modality's cue text goes before its soft tokens (false: no cue anywhere)
    use_cues_by_modality: dict[str, bool] = field(default_factory=dict)  # false: no cue for that one
    cues: dict[str, str] = field(
        default_factory=lambda: {"image": " image: ", "pc": " 3d: ", "audio": " audio: ", "video": " video: "}
    )
    discrn_prefix: str = (
        "You are given two inputs. Select exactly one of the two by reference to its relative position "
        "(first or second) that best answers the question."
    )
    discrn_qformer_text: str = "a short description"
    template: str = "{prompt}"  # chat template around the whole prompt
    answer_eos: bool = True  # the answer ends with the tokenizer's EOS (trained, and stops generation)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 10
    num_beams: int = 1
    min_length: int = 1
    length_penalty: float = 1.0


@dataclass
class EncoderPretrainConfig:
    """Brief supervised pre-training of the demo encoders on the world (`xib bootstrap`), then frozen."""

    modalities: list[str] = field(default_factory=lambda: ["image", "audio", "pc"])  # video reuses image
    output_dir: str = "${paths.artifacts}/bootstrap/encoders"  # <output_dir>/<modality>/
    target: str = "kind"  # manifest column the linear head classifies
    steps: int = 450
    steps_by_modality: dict[str, int] = field(default_factory=dict)  # overrides `steps` for a modality
    batch_size: int = 32
    lr: float = 0.001
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_items: int = 0  # train items per modality; 0 = all
    # the frames of these modalities' training clips join an encoder's training set (video -> image)
    frames_from: dict[str, list[str]] = field(default_factory=dict)
    eval_split: str = "test"  # held out by entity
    eval_modalities: list[str] = field(default_factory=lambda: ["image", "audio", "pc", "video"])
    eval_max_items: int = 0  # per split when measuring; 0 = all
    probe_steps: int = 200  # linear probe on frozen features (full batch AdamW)
    probe_lr: float = 0.01
    threads: int = 2
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "demo"
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    encoder_pretrain: EncoderPretrainConfig = field(default_factory=EncoderPretrainConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
