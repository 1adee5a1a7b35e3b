"""Typed config of the model (conf/model/*.yaml): LLM, encoders, projections, prompts, generation."""

from dataclasses import dataclass, field


@dataclass
class LLMConfig:
    path: str = "${paths.artifacts}/bootstrap/llm"  # a save_pretrained directory (model + tokenizer)
    dtype: str = "float32"


@dataclass
class EncoderConfig:
    family: str = "clip_vision"  # clip_vision | ast | pointbert
    path: str = ""  # local save_pretrained / safetensors directory; empty = build from `arch` randomly
    arch: dict[str, int] = field(default_factory=dict)  # sizes for building from config
    views: int = 1  # frames (video) or segments (audio) each projected on its own
    segment_seconds: float = 1.0  # audio only


@dataclass
class ProjectionConfig:
    kind: str = "qformer"  # qformer | linear
    num_query_tokens: int = 32
    qformer_hidden: int = 768
    qformer_layers: int = 12
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    cross_attention_frequency: int = 2
    max_instruction_tokens: int = 32
    init_from: str = ""  # local BLIP-2/InstructBLIP Q-Former checkpoint


@dataclass
class PromptConfig:
    use_cues: bool = True
    cues: dict[str, str] = field(
        default_factory=lambda: {"image": " image: ", "pc": " 3d: ", "audio": " audio: ", "video": " video: "}
    )
    discrn_prefix: str = (
        "You are given two inputs. Select exactly one of the two by reference to its relative position "
        "(first or second) that best answers the question."
    )
    discrn_qformer_text: str = "a short description"
    template: str = "{prompt}"  # chat template around the whole prompt


@dataclass
class GenerationConfig:
    max_new_tokens: int = 10
    num_beams: int = 5
    min_length: int = 1
    length_penalty: float = -1.0


@dataclass
class ModelConfig:
    name: str = "demo"
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
