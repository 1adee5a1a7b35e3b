"""BEATs (Chen et al. 2022), the paper's audio encoder, ported to plain PyTorch.

Parameter names are those of Microsoft's release, so the official checkpoint
(`BEATs_iter3_plus_AS2M.pt`: a dict with `cfg`, the model's settings, and `model`, its state dict)
loads as it is, read with `torch.load(weights_only=True)`; `path` may name that file or a directory
xib wrote (`config.json` with `model_type: xib-beats` + `model.safetensors`).

Front end as X-InstructBLIP's `BeatsAudioProcessor`: the waveform scaled to 16-bit range, kaldi
fbank (128 mel bins, 25 ms povey frames every 10 ms, 16 kHz), `(fbank - 15.41663) / (2 * 6.55582)`
(`mean`/`std` in conf), zero-padded or cut to `views` x 512 frames and split into `views`
consecutive segments of 512 frames; each segment goes through BEATs on its own and gives
(512 / 16) x (128 / 16) = 256 tokens of width 768.

The network: a 16 x 16 patch convolution, LayerNorm, a Linear to the encoder width, a grouped
convolutional position embedding (weight-normalised), then post-norm transformer layers with
DeepNorm residual scaling and a gated relative-position bias (bucketed, computed in the first
layer and shared by all).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xib.errors import XibError
from xib.models.encoders import FrozenEncoder

MODEL_TYPE = "xib-beats"
NUM_MEL_BINS = 128  # BEATs was pre-trained on 128-bin fbank
WAVE_SCALE = 2**15  # kaldi fbank of 16-bit samples, as the reference feeds it
# Settings of the official config that only matter in training (dropout, layer drop, gradient decay).
_TRAINING_ONLY = frozenset(
    {
        "dropout",
        "attention_dropout",
        "activation_dropout",
        "encoder_layerdrop",
        "dropout_input",
        "layer_wise_gradient_decay_ratio",
        "predictor_dropout",
    }
)


@dataclass
class BEATsConfig:
    """The official `cfg` (the settings that shape the computation) plus `max_length` (frames per segment)."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = False
    predictor_class: int = 527
    max_length: int = 512  # xib: fbank frames per segment (X-InstructBLIP's `frame_length`)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "beats config") -> BEATsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - _TRAINING_ONLY - {"model_type"})
        if unknown:
            raise XibError(f"{where} has unknown keys {unknown}; known: {sorted(known)}")
        config = cls(**{k: v for k, v in data.items() if k in known})
        if config.activation_fn != "gelu":
            raise XibError(f"{where}: activation_fn {config.activation_fn!r} is not supported (gelu)")
        if config.deep_norm and config.layer_norm_first:
            raise XibError(f"{where}: deep_norm and layer_norm_first exclude each other")
        return config


class WeightNormConv1d(nn.Module):
    """Conv1d with weight normalisation over every dimension but `dim` (stored as `weight_g`, `weight_v`)."""

    def __init__(self, channels: int, kernel: int, groups: int, dim: int = 2) -> None:
        super().__init__()
        self.padding, self.groups, self.dim = kernel // 2, groups, dim
        weight = torch.empty(channels, channels // groups, kernel)
        nn.init.normal_(weight, std=math.sqrt(4.0 / (kernel * channels)))
        self.weight_v = nn.Parameter(weight)
        self.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, dim))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch._weight_norm(self.weight_v, self.weight_g, self.dim)
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class TrimLast(nn.Module):
    """Drop the last step an even kernel's symmetric padding adds (fairseq's SamePad)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.remove] if self.remove else x


class RelativeAttention(nn.Module):
    """Multi-head self-attention with BEATs' gated relative-position bias."""

    def __init__(self, config: BEATsConfig, has_bias_table: bool) -> None:
        super().__init__()
        d, heads = config.encoder_embed_dim, config.encoder_attention_heads
        if d % heads:
            raise XibError(f"beats encoder_embed_dim {d} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, d // heads
        self.scaling = self.head_dim**-0.5
        self.num_buckets, self.max_distance = config.num_buckets, config.max_distance
        self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.q_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.gru_rel_pos = config.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(config.num_buckets, heads)

    def bucket(self, relative: torch.Tensor) -> torch.Tensor:
        """T5-style bidirectional buckets: exact near 0, logarithmic up to `max_distance`."""
        half = self.num_buckets // 2
        buckets = (relative > 0).long() * half
        distance = relative.abs()
        exact = half // 2
        large = (
            exact
            + (
                torch.log(distance.float() / exact) / math.log(self.max_distance / exact) * (half - exact)
            ).long()
        )
        large = torch.clamp(large, max=half - 1)
        return buckets + torch.where(distance < exact, distance, large)

    def position_bias(self, length: int, table: nn.Embedding) -> torch.Tensor:
        positions = torch.arange(length, device=table.weight.device)
        buckets = self.bucket(positions[None, :] - positions[:, None])
        return table(buckets).permute(2, 0, 1)  # [heads, L, L]

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, D]; bias [heads, L, L] (ungated) or None."""
        b, length, d = x.shape
        alpha = 32.0  # the reference scales scores down and back up by alpha for fp16 stability

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.heads, self.head_dim).transpose(1, 2)

        q_raw = split(self.q_proj(x))
        q = q_raw * self.scaling / alpha
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2)
        scores = (scores - scores.amax(dim=-1, keepdim=True)) * alpha
        if bias is not None:
            bias = bias.unsqueeze(0)
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q_raw).view(b, self.heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
            scores = scores + bias
        out = scores.softmax(dim=-1).type_as(v) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))


class EncoderLayer(nn.Module):
    def __init__(self, config: BEATsConfig, has_bias_table: bool) -> None:
        super().__init__()
        d = config.encoder_embed_dim
        self.self_attn = RelativeAttention(config, has_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.layer_norm_first = config.layer_norm_first
        self.alpha = math.pow(2 * config.encoder_layers, 1 / 4) if config.deep_norm else 1.0

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x).float()).type_as(x))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), bias)
            return x + self.mlp(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, bias))
        return self.final_layer_norm(x * self.alpha + self.mlp(x))


class TransformerEncoder(nn.Module):
    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        d = config.encoder_embed_dim
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(d, config.conv_pos, config.conv_pos_groups), TrimLast(config.conv_pos), nn.GELU()
        )
        self.relative = config.relative_position_embedding
        self.layers = nn.ModuleList(
            EncoderLayer(config, has_bias_table=self.relative and i == 0)
            for i in range(config.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(d)
        self.layer_norm_first = config.layer_norm_first

    def forward(self, x: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, list]:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        bias = None
        if self.relative:
            first = cast(EncoderLayer, self.layers[0]).self_attn  # ModuleList items are typed nn.Module
            bias = first.position_bias(x.shape[1], first.relative_attention_bias)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, bias)
            hidden.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, (hidden if output_hidden_states else [])


class BEATs(nn.Module):
    """fbank `[B, frames, 128]` (normalised) -> tokens `[B, frames/16 * 128/16, encoder_embed_dim]`."""

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        p = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=p, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        if config.embed_dim != config.encoder_embed_dim:
            self.post_extract_proj = nn.Linear(config.embed_dim, config.encoder_embed_dim)
        self.encoder = TransformerEncoder(config)
        if config.finetuned_model:
            self.predictor = nn.Linear(config.encoder_embed_dim, config.predictor_class)

    def forward(self, fbank: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, list]:
        x = self.patch_embedding(fbank.unsqueeze(1))  # [B, C, T/p, F/p]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if hasattr(self, "post_extract_proj"):
            x = self.post_extract_proj(x)
        return self.encoder(x, output_hidden_states)

    # ------------------------------------------------------------------------------ checkpoints
    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict in the release's naming: the shared bias table under every layer, as there."""
        state = dict(self.state_dict())
        table = "encoder.layers.0.self_attn.relative_attention_bias.weight"
        if table in state:
            for i in range(1, self.config.encoder_layers):
                state[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = state[table]
        return state

    def load_official(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Load a release state dict; every key must be known and every weight present, with its shape."""
        state = dict(state)
        table = "encoder.layers.0.self_attn.relative_attention_bias.weight"
        for i in range(1, self.config.encoder_layers):
            shared = state.pop(f"encoder.layers.{i}.self_attn.relative_attention_bias.weight", None)
            if shared is not None and table in state and not torch.equal(shared, state[table]):
                raise XibError(f"{where}: layer {i}'s relative position table differs from layer 0's")
        from xib.models.state_dicts import check_state_dict

        check_state_dict(self.state_dict(), state, where, "BEATs")
        self.load_state_dict(state)

    def save_pretrained(self, directory: str | Path) -> None:
        from xib.models.state_dicts import save_config_and_weights

        save_config_and_weights(self, {"model_type": MODEL_TYPE, **asdict(self.config)}, directory)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BEATs:
        """From the official `.pt` (dict with `cfg` and `model`) or a directory `save_pretrained` wrote."""
        path = Path(path)
        if path.is_file():
            return cls.from_official(path)
        from safetensors.torch import load_file

        config_file, weights_file = path / "config.json", path / "model.safetensors"
        for file in (config_file, weights_file):
            if not file.is_file():
                raise XibError(f"{file}: missing (a beats directory holds config.json + model.safetensors)")
        data = json.loads(config_file.read_text())
        if data.get("model_type") != MODEL_TYPE:
            raise XibError(
                f"{config_file}: model_type is {data.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        model = cls(BEATsConfig.from_dict(data, where=str(config_file)))
        model.load_official(load_file(str(weights_file)), str(weights_file))
        return model

    @classmethod
    def from_official(cls, file: str | Path) -> BEATs:
        from xib.models.lavis_checkpoint import read_torch_checkpoint

        checkpoint = read_torch_checkpoint(file)
        if not isinstance(checkpoint, dict) or not {"cfg", "model"} <= set(checkpoint):
            keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise XibError(
                f"{file}: not a BEATs release checkpoint (expected a dict with cfg and model, got {keys})"
            )
        model = cls(BEATsConfig.from_dict(dict(checkpoint["cfg"]), where=f"{file} cfg"))
        model.load_official(checkpoint["model"], str(file))
        return model


class BEATsEncoder(FrozenEncoder):
    family = "beats"
    accepts_file = True
    backbone: BEATs

    def build_backbone(self, directory: Path | None) -> BEATs:
        if len(self.cfg.mean) != 1 or len(self.cfg.std) != 1:
            raise XibError(
                f"{self.modality} encoder (beats): mean and std need one value each (fbank statistics)"
            )
        if directory is not None:
            return BEATs.from_pretrained(directory)
        return BEATs(BEATsConfig.from_dict(dict(self.cfg.arch), where=f"{self.modality} beats arch"))

    def backbone_hidden_size(self) -> int:
        return int(self.backbone.config.encoder_embed_dim)

    def backbone_config(self) -> dict[str, Any]:
        return asdict(self.backbone.config)

    def save_backbone(self, directory: Path) -> None:
        self.backbone.save_pretrained(directory)

    @property
    def mel_filters(self) -> torch.Tensor:
        return kaldi_mel_filters(int(self.cfg.sample_rate))

    def preprocess_config(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            **super().preprocess_config(),
            "sample_rate": int(cfg.sample_rate),
            "mean": list(cfg.mean),
            "std": list(cfg.std),
        }

    def preprocess(self, items: list[np.ndarray]) -> torch.Tensor:
        """float32 [T] waveforms in [-1, 1] -> [B, V, max_length, 128] normalised fbank segments."""
        from xib.models.encoders.audio import kaldi_fbank

        sr = int(self.cfg.sample_rate)
        frames = int(self.backbone.config.max_length)
        mean, std = float(self.cfg.mean[0]), float(self.cfg.std[0])
        out = []
        for index, item in enumerate(items):
            wave = np.asarray(item)
            if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating) or wave.size == 0:
                raise ValueError(
                    f"{self.modality} item {index}: expected float32 [T] audio, got {wave.dtype} {wave.shape}"
                )
            samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) * WAVE_SCALE
            frame = round(0.025 * sr)
            if samples.numel() < frame:  # shorter than one fbank frame: silence, padded like the rest
                samples = F.pad(samples, (0, frame - samples.numel()))
            fbank = kaldi_fbank(samples[None], self.mel_filters, sr, window="povey")[0]
            fbank = (fbank - mean) / (2.0 * std)
            want = frames * self.views  # the reference pads the normalised fbank with zeros, then cuts
            if fbank.shape[0] < want:
                fbank = F.pad(fbank, (0, 0, 0, want - fbank.shape[0]))
            out.append(fbank[:want].reshape(self.views, frames, NUM_MEL_BINS))
        return torch.stack(out)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = int(self.cfg.feature_layer)
        tokens, hidden = self.backbone(inputs, output_hidden_states=layer != -1)
        if layer != -1:
            tokens = hidden[layer]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


@functools.lru_cache(maxsize=4)
def kaldi_mel_filters(sample_rate: int) -> torch.Tensor:
    """[257, 128] kaldi mel filters (20 Hz to Nyquist) for 25 ms frames padded to 512 points."""
    from transformers.audio_utils import mel_filter_bank

    n_fft = 1 << (round(0.025 * sample_rate) - 1).bit_length()
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=NUM_MEL_BINS,
        min_frequency=20.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm=None,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )
    return torch.from_numpy(filters).float()
