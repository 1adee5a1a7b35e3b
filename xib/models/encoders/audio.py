"""Audio encoder: transformers ASTModel (Audio Spectrogram Transformer) on kaldi-style log-mel fbank.

The waveform (float32 [T], `sample_rate` Hz) is cut into `views` segments of `segment_seconds`,
spread evenly over the clip (overlapping when the clip is short, zero-padded when shorter than one
segment); each segment becomes a `[max_length, num_mel_bins]` fbank (25 ms Hann frames every 10 ms,
DC removed, pre-emphasis 0.97, power spectrum, kaldi mel filters, natural log), normalised as AST
does, `(fbank - mean) / (2 * std)`, and goes through the transformer on its own. No torchaudio.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from xib.errors import XibError
from xib.models.encoders import HFBackboneEncoder

if TYPE_CHECKING:
    from xib.models.config import EncoderConfig

FRAME_LENGTH_S = 0.025
FRAME_SHIFT_S = 0.010
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
_ARCH_KEYS = (
    "num_mel_bins",
    "max_length",
    "patch_size",
    "frequency_stride",
    "time_stride",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


def segment_starts(total: int, length: int, views: int) -> np.ndarray:
    """Start samples of `views` segments of `length` spread evenly over `total` samples."""
    return np.linspace(0, max(total - length, 0), views).round().astype(np.int64)


def kaldi_fbank(
    segments: torch.Tensor, mel_filters: torch.Tensor, sample_rate: int, window: str = "hann"
) -> torch.Tensor:
    """[S, L] waveforms -> [S, frames, mel] log-mel filterbank (kaldi conventions, snip_edges).

    `window`: "hann" (AST's) or "povey" (kaldi's default, Hann to the power 0.85: BEATs')."""
    frame = round(FRAME_LENGTH_S * sample_rate)
    shift = round(FRAME_SHIFT_S * sample_rate)
    if segments.shape[-1] < frame:
        raise ValueError(f"audio segment of {segments.shape[-1]} samples is shorter than one frame ({frame})")
    frames = segments.unfold(-1, frame, shift)  # [S, F, frame]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - PREEMPHASIS * previous
    if window not in ("hann", "povey"):
        raise ValueError(f"fbank window {window!r}: expected hann or povey")
    taper = torch.hann_window(frame, periodic=False, dtype=frames.dtype)
    if window == "povey":
        taper = taper.pow(0.85)
    n_fft = 1 << (frame - 1).bit_length()
    power = torch.fft.rfft(frames * taper, n=n_fft).abs().pow(2)  # [S, F, n_fft/2+1]
    return torch.log(torch.clamp(power @ mel_filters, min=MEL_FLOOR))


class ASTEncoder(HFBackboneEncoder):
    family = "ast"
    mel_filters: torch.Tensor  # a (non-persistent) buffer, registered in __init__

    def __init__(self, modality: str, cfg: EncoderConfig) -> None:
        super().__init__(modality, cfg)
        from transformers.audio_utils import mel_filter_bank

        sr = int(self.cfg.sample_rate)
        n_fft = 1 << (round(FRAME_LENGTH_S * sr) - 1).bit_length()
        filters = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=self.num_mel_bins,
            min_frequency=20.0,
            max_frequency=sr / 2,
            sampling_rate=sr,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )
        self.register_buffer("mel_filters", torch.from_numpy(filters).float(), persistent=False)
        if len(self.cfg.mean) != 1 or len(self.cfg.std) != 1:
            raise XibError(f"{modality} encoder (ast): mean and std need one value each (fbank statistics)")

    def build_backbone(self, directory: Path | None) -> nn.Module:
        from transformers import ASTConfig, ASTModel

        if directory is not None:
            return ASTModel.from_pretrained(str(directory), dtype=self.dtype)
        unknown = sorted(set(self.cfg.arch) - set(_ARCH_KEYS))
        if unknown:
            raise XibError(f"ast arch has unknown keys {unknown}; known: {list(_ARCH_KEYS)}")
        arch: dict[str, Any] = dict(self.cfg.arch)  # sizes only: ASTConfig's other arguments keep defaults
        return ASTModel(ASTConfig(**arch))

    @property
    def num_mel_bins(self) -> int:
        return int(self.backbone.config.num_mel_bins)

    @property
    def max_length(self) -> int:
        return int(self.backbone.config.max_length)

    def preprocess_config(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            **super().preprocess_config(),
            "segment_seconds": float(cfg.segment_seconds),
            "sample_rate": int(cfg.sample_rate),
            "mean": list(cfg.mean),
            "std": list(cfg.std),
        }

    def preprocess(self, items: list[np.ndarray]) -> torch.Tensor:
        """float32 [T] waveforms -> [B, V, max_length, num_mel_bins] normalised fbank."""
        sr = int(self.cfg.sample_rate)
        length = round(float(self.cfg.segment_seconds) * sr)
        segments = []
        for index, item in enumerate(items):
            wave = np.asarray(item)
            if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating) or wave.size == 0:
                raise ValueError(
                    f"{self.modality} item {index}: expected float32 [T] audio, got {wave.dtype} {wave.shape}"
                )
            samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            if samples.numel() < length:
                samples = torch.nn.functional.pad(samples, (0, length - samples.numel()))
            for start in segment_starts(samples.numel(), length, self.views):
                segments.append(samples[start : start + length])
        fbank = kaldi_fbank(torch.stack(segments), self.mel_filters, sr)  # [B*V, frames, mel]
        frames = fbank.shape[1]
        if frames < self.max_length:  # AST pads the (unnormalised) fbank with zeros
            fbank = torch.nn.functional.pad(fbank, (0, 0, 0, self.max_length - frames))
        fbank = fbank[:, : self.max_length]
        fbank = (fbank - float(self.cfg.mean[0])) / (2.0 * float(self.cfg.std[0]))
        return fbank.reshape(len(items), self.views, self.max_length, self.num_mel_bins)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = int(self.cfg.feature_layer)
        result = self.backbone(input_values=inputs, output_hidden_states=layer != -1)
        tokens = result.last_hidden_state if layer == -1 else result.hidden_states[layer]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
