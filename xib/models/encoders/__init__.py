"""Frozen modality encoders: decoded media in, token features out.

`build_encoder(modality, enc_cfg)` returns a `FrozenEncoder` of the configured family:
- `clip_vision`  transformers CLIPVisionModel (image; video frame by frame)
- `blip2_vision` transformers Blip2VisionModel: the EVA ViT-g/14 tower BLIP-2/InstructBLIP ship
- `ast`          transformers ASTModel on kaldi-style log-mel fbank computed in torch (audio segments)
- `pointbert`    a pure-PyTorch PointBERT (FPS + kNN patches, mini-PointNet, transformer; CLS first)
- `beats`        a pure-PyTorch port of BEATs (the paper's audio encoder) on kaldi fbank, 512-frame segments

Every encoder is frozen (no parameter requires grad, eval mode) unless `unfreeze()` is called by
the brief pre-training in `xib.models.encoder_pretrain`. `preprocess` turns a list of decoded media
into one batch tensor `[B, V, ...]`; `forward` runs every view (video frame, audio segment) through
the backbone on its own and returns `EncoderOutput(features [B, V, N, D], mask [B, V, N])`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from xib.errors import XibError
from xib.models.config import ENCODER_FAMILIES as FAMILIES
from xib.models.config import EncoderConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


# Keys of a saved backbone config that say nothing about what the encoder computes.
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "output_hidden_states"}
)


@dataclass
class EncoderOutput:
    features: torch.Tensor  # [B, V, N, D] float32
    mask: torch.Tensor  # [B, V, N] bool, True = a real token


def encoder_config(cfg: EncoderConfig | Mapping[str, Any]) -> EncoderConfig:
    """An EncoderConfig from a DictConfig, a dict or an EncoderConfig (unknown keys are an error)."""
    if isinstance(cfg, EncoderConfig):
        return cfg
    plain: Any = cfg
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        plain = OmegaConf.to_container(cfg, resolve=True)
    known = {f.name for f in dataclasses.fields(EncoderConfig)}
    unknown = sorted(set(plain) - known)
    if unknown:
        raise XibError(f"encoder config has unknown keys {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {k: (dict(v) if k == "arch" else v) for k, v in plain.items()}
    return EncoderConfig(**values)


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise XibError(f"encoder dtype {name!r} is not a torch dtype (float32, bfloat16, float16)")
    return dtype


def saved_model_dir(path: str, accepts_file: bool = False) -> Path | None:
    """The directory (or, for families that read one, the checkpoint file) to load from, or None
    when `path` is empty or missing (build from `arch`)."""
    if not path:
        return None
    directory = Path(path)
    if not directory.exists():
        return None
    if accepts_file and directory.is_file():
        return directory
    if not (directory / "config.json").is_file():
        raise XibError(
            f"{directory}: encoder directory has no config.json (expected a save_pretrained folder)"
        )
    return directory


class FrozenEncoder(nn.Module):
    """Base of every encoder family. Subclasses set `family`, build `self.backbone`, and implement
    `preprocess`, `encode` (flat views -> tokens), `save_backbone` and `backbone_config`."""

    family: ClassVar[str] = ""
    # Bump when a change to preprocessing code changes the features of the same media.
    preprocess_version: ClassVar[str] = "1"
    # True: `path` may also name a checkpoint file in the family's official layout (BEATs' .pt).
    accepts_file: ClassVar[bool] = False

    def __init__(self, modality: str, cfg: EncoderConfig) -> None:
        super().__init__()
        self.modality = modality
        self.cfg = cfg
        self.views = int(cfg.views)
        if self.views < 1:
            raise XibError(f"encoder for {modality}: views must be >= 1, got {self.views}")
        self.dtype = torch_dtype(cfg.dtype)
        self.loaded_from: Path | None = saved_model_dir(cfg.path, self.accepts_file)
        if cfg.path and self.loaded_from is None:
            log.warning(
                "%s encoder: %s does not exist; building %s from arch (random init)",
                modality,
                cfg.path,
                self.family,
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.seed))
            self.backbone = self.build_backbone(self.loaded_from)
        self.backbone.to(self.dtype)
        self.hidden_size: int = self.backbone_hidden_size()
        self._fingerprint: str | None = None
        self.frozen = True
        self.freeze()

    # ---------------------------------------------------------------- family hooks
    def build_backbone(self, directory: Path | None) -> nn.Module:
        raise NotImplementedError

    def backbone_hidden_size(self) -> int:
        raise NotImplementedError

    def backbone_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def save_backbone(self, directory: Path) -> None:
        raise NotImplementedError

    def preprocess(self, items: list[np.ndarray]) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat views `[B*V, ...]` -> (tokens [B*V, N, D], mask [B*V, N])."""
        raise NotImplementedError

    def preprocess_config(self) -> dict[str, Any]:
        """What preprocessing depends on (hashed into the fingerprint)."""
        cfg = self.cfg
        return {
            "family": self.family,
            "modality": self.modality,
            "version": self.preprocess_version,
            "views": self.views,
            "feature_layer": cfg.feature_layer,
            "dtype": cfg.dtype,
        }

    # ---------------------------------------------------------------- common behaviour
    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        if batch.dim() < 3 or batch.shape[1] != self.views:
            raise ValueError(
                f"{self.modality} encoder expects a preprocessed batch [B, {self.views}, ...], "
                f"got {tuple(batch.shape)}; call preprocess() first"
            )
        b, v = batch.shape[:2]
        flat = batch.reshape(b * v, *batch.shape[2:])
        if flat.is_floating_point():
            flat = flat.to(self.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens, mask = self.encode(flat)
        n, d = tokens.shape[1:]
        features = tokens.float().reshape(b, v, n, d)
        return EncoderOutput(features=features, mask=mask.reshape(b, v, n).bool())

    def freeze(self) -> FrozenEncoder:
        self.frozen = True
        self.requires_grad_(False)
        super().train(False)
        self._fingerprint = None
        return self

    def unfreeze(self) -> FrozenEncoder:
        """For the brief pre-training only: make the backbone trainable (and forget the fingerprint)."""
        self.frozen = False
        self.backbone.requires_grad_(True)
        super().train(True)
        self._fingerprint = None
        return self

    def train(self, mode: bool = True) -> FrozenEncoder:
        # A parent model's .train() must not switch a frozen encoder out of eval mode.
        return super().train(mode and not self.frozen)

    def fingerprint(self) -> str:
        """sha256 of the backbone config, the weights and the preprocessing (not of paths or seeds)."""
        if self._fingerprint is not None and self.frozen:
            return self._fingerprint
        digest = hashlib.sha256()
        meta = {"preprocess": self.preprocess_config(), "backbone": self.backbone_config()}
        digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.backbone.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        value = digest.hexdigest()
        if self.frozen:
            self._fingerprint = value
        return value

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the backbone (config.json + model.safetensors) atomically into `directory`."""
        from xib.io import atomic_path

        directory = Path(directory)
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            self.save_backbone(tmp)
        return directory


def clean_hf_config(config: Any) -> dict[str, Any]:
    data = config.to_dict()
    return {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG_KEYS}


class HFBackboneEncoder(FrozenEncoder):
    """A FrozenEncoder whose backbone is a transformers model (saved and described the HF way)."""

    backbone: PreTrainedModel

    def backbone_hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    def backbone_config(self) -> dict[str, Any]:
        return clean_hf_config(self.backbone.config)

    def save_backbone(self, directory: Path) -> None:
        self.backbone.save_pretrained(str(directory))


def output_width(enc_cfg: EncoderConfig | Mapping[str, Any]) -> int:
    """The width D of the tokens an encoder config gives, read from its `arch` (nothing is built)."""
    cfg = encoder_config(enc_cfg)
    arch = dict(cfg.arch)
    if cfg.family == "beats":
        return int(arch.get("encoder_embed_dim", 768))
    if cfg.family == "pointbert":
        return int(arch.get("global_dim") or arch["hidden_size"])
    return int(arch["hidden_size"])


def build_encoder(modality: str, enc_cfg: EncoderConfig | Mapping[str, Any]) -> FrozenEncoder:
    """The frozen encoder `enc_cfg` describes (loaded from `path` when it exists, else built from `arch`)."""
    cfg = encoder_config(enc_cfg)
    if cfg.family in ("clip_vision", "blip2_vision"):
        from xib.models.encoders.clip_vision import Blip2VisionEncoder, CLIPVisionEncoder

        cls: type[FrozenEncoder] = CLIPVisionEncoder if cfg.family == "clip_vision" else Blip2VisionEncoder
    elif cfg.family == "ast":
        from xib.models.encoders.audio import ASTEncoder

        cls = ASTEncoder
    elif cfg.family == "pointbert":
        from xib.models.encoders.pointbert import PointBERTEncoder

        cls = PointBERTEncoder
    elif cfg.family == "beats":
        from xib.models.encoders.beats import BEATsEncoder

        cls = BEATsEncoder
    else:
        raise XibError(f"unknown encoder family {cfg.family!r} for {modality}; expected one of {FAMILIES}")
    return cls(modality, cfg)


__all__ = ["FAMILIES", "EncoderOutput", "FrozenEncoder", "build_encoder", "encoder_config", "output_width"]
