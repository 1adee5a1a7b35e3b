"""Image and video encoders on transformers vision towers (CLIP ViT; BLIP-2's EVA ViT-g/14).

Preprocessing in torch, as CLIP does it: resize the shorter side to `image_size` (bicubic,
antialiased), centre crop, scale to [0, 1], normalise by the configured mean/std. A video is
`views` frames sampled evenly over its length, each frame encoded on its own like an image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xib.errors import XibError
from xib.models.encoders import HFBackboneEncoder

_TOKEN_KEYS = (
    "image_size",
    "patch_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "num_channels",
)


def frame_indices(total: int, views: int) -> np.ndarray:
    """`views` frame indices spread evenly over `total` frames (repeats when there are fewer)."""
    return np.linspace(0, total - 1, views).round().astype(np.int64)


def resize_center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[F, 3, H, W] float in [0, 1] -> [F, 3, size, size]."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(
            frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return frames[..., top : top + size, left : left + size].clamp(0.0, 1.0)


class CLIPVisionEncoder(HFBackboneEncoder):
    family = "clip_vision"

    def _classes(self) -> tuple[Any, Any]:
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return CLIPVisionConfig, CLIPVisionModel

    def build_backbone(self, directory: Path | None) -> nn.Module:
        config_cls, model_cls = self._classes()
        if directory is not None:
            return model_cls.from_pretrained(str(directory), dtype=self.dtype)
        unknown = sorted(set(self.cfg.arch) - set(_TOKEN_KEYS))
        if unknown:
            raise XibError(f"{self.family} arch has unknown keys {unknown}; known: {list(_TOKEN_KEYS)}")
        return model_cls(config_cls(**self.cfg.arch))

    @property
    def image_size(self) -> int:
        return int(self.backbone.config.image_size)

    def preprocess_config(self) -> dict[str, Any]:
        return {**super().preprocess_config(), "mean": list(self.cfg.mean), "std": list(self.cfg.std)}

    def preprocess(self, items: list[np.ndarray]) -> torch.Tensor:
        """image uint8 [H, W, 3] (views 1) or video uint8 [T, H, W, 3] -> [B, V, 3, S, S] float32."""
        if len(self.cfg.mean) != 3 or len(self.cfg.std) != 3:
            raise XibError(f"{self.modality} encoder: mean and std need 3 values (RGB)")
        mean = torch.tensor(self.cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
        out = []
        for index, item in enumerate(items):
            array = np.asarray(item)
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or array.shape[0] < 1:
                raise ValueError(
                    f"{self.modality} item {index}: expected uint8 [H, W, 3] or [T, H, W, 3], "
                    f"got {array.dtype} {array.shape}"
                )
            if array.shape[0] != self.views:
                array = array[frame_indices(array.shape[0], self.views)]
            frames = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 255.0
            frames = resize_center_crop(frames, self.image_size)
            out.append((frames - mean) / std)
        return torch.stack(out)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = int(self.cfg.feature_layer)
        result = self.backbone(pixel_values=inputs, output_hidden_states=layer != -1)
        tokens = result.last_hidden_state if layer == -1 else result.hidden_states[layer]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


class Blip2VisionEncoder(CLIPVisionEncoder):
    """The EVA ViT-g/14 tower of BLIP-2 / InstructBLIP (transformers Blip2VisionModel)."""

    family = "blip2_vision"

    def _classes(self) -> tuple[Any, Any]:
        from transformers import Blip2VisionConfig, Blip2VisionModel

        return Blip2VisionConfig, Blip2VisionModel
