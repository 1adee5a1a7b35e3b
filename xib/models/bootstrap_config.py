"""Typed config of `xib bootstrap` (conf/bootstrap/*.yaml): the demo LLM, pre-trained on the world's text."""

from dataclasses import dataclass, field


@dataclass
class LLMArchConfig:
    """A small LlamaForCausalLM (RoPE, SwiGLU, RMSNorm), the toy world's Vicuna."""

    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    vocab_min_frequency: int = 1  # words seen fewer times in the corpus map to <unk>


@dataclass
class LLMPretrainConfig:
    steps: int = 4000
    batch_size: int = 32  # rows of `seq_len` tokens, each packed with whole corpus lines
    seq_len: int = 128  # as long as the DisCRn prompts with soft tokens, so every position is trained
    lr: float = 0.003
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    grad_clip: float = 1.0
    # Loss weight of the token after "answer:" (comparison and QA answers); 1 = the plain causal-LM loss.
    answer_loss_weight: float = 1.0
    threads: int = 2
    seed: int = 0
    log_every: int = 100
    eval_every: int = 250  # held-out ceiling (logits) reported during pre-training; 0 = never


@dataclass
class CeilingConfig:
    """Text-only DisCRn on the corpus's held-out kind pairs: the most cross-modal reasoning can reach."""

    pairs: list[str] = field(
        default_factory=lambda: ["image_pc", "pc_image", "audio_video", "video_audio"]
    )  # ordered modality pairs (m1 first) reported one by one
    max_examples: int = 0  # per ordered pair; 0 = every held-out comparison
    seen_examples: int = 200  # per ordered pair, comparisons the corpus holds (recall, for contrast)
    batch_size: int = 64
    max_new_tokens: int = 4  # greedy generation, then the paper's answer normalisation
    target: float = 0.95  # the minimum by pair and order the shipped LLM is checked against


@dataclass
class BootstrapLLMConfig:
    enabled: bool = True  # false when model.llm is a real LLM (vicuna7b): nothing to pre-train
    output_dir: str = "${paths.artifacts}/bootstrap/llm"
    # Weights made by `xib bootstrap` and shipped in the repository (relative paths: to the repo root).
    # Used instead of pre-training when their corpus hash and config match this run's; else rebuilt.
    use_shipped: bool = True
    shipped_dir: str = "assets/bootstrap/llm"
    arch: LLMArchConfig = field(default_factory=LLMArchConfig)
    pretrain: LLMPretrainConfig = field(default_factory=LLMPretrainConfig)
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)


@dataclass
class BootstrapConfig:
    llm: BootstrapLLMConfig = field(default_factory=BootstrapLLMConfig)
