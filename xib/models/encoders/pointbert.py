"""Point-cloud encoder: a pure-PyTorch PointBERT (the ULIP-2 3D tower's architecture), no CUDA extension.

Points (float32 [N, 3+], xyz first) are centred (or scaled to the unit sphere, as ULIP does) and
resampled to `sample_points`; farthest-point sampling picks `num_groups` centres, each centre's
`group_size` nearest neighbours (relative to the centre) form a patch, a mini-PointNet embeds each
patch, an MLP embeds each centre as its position, and a pre-norm transformer (position added before
every block, as PointBERT does) runs over [CLS, patches]. Output tokens: the global CLS token first,
then one token per patch. Saved as `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xib.errors import XibError
from xib.models.encoders import FrozenEncoder

MODEL_TYPE = "xib-pointbert"
PC_NORMALIZE = ("none", "center", "unit_sphere")


@dataclass
class PointBERTConfig:
    num_groups: int = 512
    group_size: int = 32
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 0  # 0 = 4 * hidden_size
    sample_points: int = 8192
    pointnet_dim: int = 128  # mini-PointNet widths: d, 2d | 4d, 4d -> hidden
    layer_norm_eps: float = 1e-6
    # ULIP PointBERT: the mini-PointNet ends at `encoder_dims`, then a Linear to hidden (0 = no such step)
    encoder_dims: int = 0
    # ULIP-2's 3D embedding, what X-InstructBLIP's 3D Q-Former reads: one token,
    # concat(cls, max over patch tokens) @ pc_projection [2 * hidden, global_dim] (0 = every token instead)
    global_dim: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "pointbert arch") -> PointBERTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"model_type"})
        if unknown:
            raise XibError(f"{where} has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """[B, P, 3] -> indices [B, count] of farthest-point samples, starting at point 0."""
    b, p, _ = xyz.shape
    if count > p:
        raise ValueError(f"cannot sample {count} centres from {p} points")
    indices = torch.zeros(b, count, dtype=torch.long, device=xyz.device)
    distance = torch.full((b, p), float("inf"), dtype=xyz.dtype, device=xyz.device)
    farthest = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(count):
        indices[:, i] = farthest
        centre = xyz[rows, farthest].unsqueeze(1)
        distance = torch.minimum(distance, (xyz - centre).pow(2).sum(-1))
        farthest = distance.argmax(-1)
    return indices


def group_points(xyz: torch.Tensor, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P, 3] -> (patches [B, G, K, 3] relative to their centre, centres [B, G, 3])."""
    with torch.no_grad():
        centre_idx = farthest_point_sample(xyz.detach(), num_groups)
        centres = torch.gather(xyz, 1, centre_idx.unsqueeze(-1).expand(-1, -1, 3))
        knn = torch.cdist(centres, xyz).topk(group_size, dim=-1, largest=False).indices  # [B, G, K]
    b, g, k = knn.shape
    patches = torch.gather(xyz, 1, knn.reshape(b, g * k, 1).expand(-1, -1, 3)).reshape(b, g, k, 3)
    return patches - centres.unsqueeze(2), centres


class PointBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of [..., C] point features (PointBERT's Conv1d + BN, channels last).

    Unlike a LayerNorm it keeps each point's distance from its patch centre, i.e. the local scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class MiniPointNet(nn.Module):
    """Shared per-point MLP, max-pool, concatenate the pooled feature back, MLP, max-pool (PointBERT)."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(
            nn.Linear(3, width), PointBatchNorm(width), nn.ReLU(), nn.Linear(width, 2 * width)
        )
        self.second = nn.Sequential(
            nn.Linear(4 * width, 4 * width),
            PointBatchNorm(4 * width),
            nn.ReLU(),
            nn.Linear(4 * width, out_dim),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # [B, G, K, 3] -> [B, G, out]
        x = self.first(patches)
        pooled = x.max(dim=2, keepdim=True).values.expand_as(x)
        return self.second(torch.cat([pooled, x], dim=-1)).max(dim=2).values


class PointBERT(nn.Module):
    def __init__(self, config: PointBERTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        if d % config.num_attention_heads:
            raise XibError(
                f"pointbert hidden_size {d} is not divisible by {config.num_attention_heads} heads"
            )
        self.patch_embed = MiniPointNet(config.pointnet_dim, config.encoder_dims or d)
        if config.encoder_dims:
            self.reduce_dim = nn.Linear(config.encoder_dims, d)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, d))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=d,
                nhead=config.num_attention_heads,
                dim_feedforward=config.intermediate_size or 4 * d,
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=config.layer_norm_eps,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if config.global_dim:
            self.pc_projection = nn.Parameter(torch.randn(2 * d, config.global_dim) * config.global_dim**-0.5)

    @property
    def output_dim(self) -> int:
        return self.config.global_dim or self.config.hidden_size

    def forward(self, xyz: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, list]:
        """[B, P, 3] -> (tokens [B, 1 + G, D] after the final norm, or the global token [B, 1, global_dim];
        hidden states per block input)."""
        patches, centres = group_points(xyz, self.config.num_groups, self.config.group_size)
        b = xyz.shape[0]
        embedded = self.patch_embed(patches)
        if self.config.encoder_dims:
            embedded = self.reduce_dim(embedded)
        x = torch.cat([self.cls_token.expand(b, -1, -1), embedded], dim=1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.pos_embed(centres)], dim=1)
        hidden = [x]
        for block in self.blocks:
            x = block(x + pos)
            hidden.append(x)
        x = self.norm(x)
        if self.config.global_dim:
            x = (torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1) @ self.pc_projection).unsqueeze(1)
        return x, (hidden if output_hidden_states else [])

    def save_pretrained(self, directory: str | Path) -> None:
        from xib.models.state_dicts import save_config_and_weights

        save_config_and_weights(self, {"model_type": MODEL_TYPE, **asdict(self.config)}, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PointBERT:
        from safetensors.torch import load_file

        directory = Path(directory)
        config_file, weights_file = directory / "config.json", directory / "model.safetensors"
        for file in (config_file, weights_file):
            if not file.is_file():
                raise XibError(
                    f"{file}: missing (a pointbert directory holds config.json + model.safetensors)"
                )
        data = json.loads(config_file.read_text())
        if data.get("model_type") != MODEL_TYPE:
            raise XibError(
                f"{config_file}: model_type is {data.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        model = cls(PointBERTConfig.from_dict(data, where=str(config_file)))
        missing, unexpected = model.load_state_dict(load_file(str(weights_file)), strict=False)
        if missing or unexpected:
            raise XibError(
                f"{weights_file}: weights do not match config (missing {missing}, unexpected {unexpected})"
            )
        return model


def normalize_points(xyz: np.ndarray, mode: str) -> np.ndarray:
    if mode == "none":
        return xyz
    xyz = xyz - xyz.mean(axis=0, keepdims=True)
    if mode == "unit_sphere":
        radius = float(np.sqrt((xyz**2).sum(axis=1)).max())
        xyz = xyz / max(radius, 1e-8)
    return xyz


def resample_indices(total: int, count: int) -> np.ndarray:
    """A fixed (seeded) choice of `count` of `total` points: same input, same points."""
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(total, size=count, replace=total < count))


class PointBERTEncoder(FrozenEncoder):
    family = "pointbert"
    backbone: PointBERT

    def build_backbone(self, directory: Path | None) -> PointBERT:
        if self.cfg.pc_normalize not in PC_NORMALIZE:
            raise XibError(f"pc_normalize {self.cfg.pc_normalize!r} is not one of {PC_NORMALIZE}")
        if directory is not None:
            return PointBERT.from_pretrained(directory)
        return PointBERT(PointBERTConfig.from_dict(dict(self.cfg.arch)))

    def backbone_hidden_size(self) -> int:
        return int(self.backbone.output_dim)

    def backbone_config(self) -> dict[str, Any]:
        config = asdict(self.backbone.config)
        # settings added later keep their defaults out of the fingerprint of models saved before them
        return {k: v for k, v in config.items() if not (k in ("encoder_dims", "global_dim") and v == 0)}

    def save_backbone(self, directory: Path) -> None:
        self.backbone.save_pretrained(directory)

    def preprocess_config(self) -> dict[str, Any]:
        return {**super().preprocess_config(), "pc_normalize": self.cfg.pc_normalize}

    def preprocess(self, items: list[np.ndarray]) -> torch.Tensor:
        """float32 [N, 3+] point clouds -> [B, 1, sample_points, 3]."""
        if self.views != 1:
            raise XibError(f"{self.modality} encoder (pointbert): views must be 1, got {self.views}")
        count = int(self.backbone.config.sample_points)
        out = []
        for index, item in enumerate(items):
            array = np.asarray(item)
            if array.ndim != 2 or array.shape[1] < 3 or array.shape[0] == 0:
                raise ValueError(
                    f"{self.modality} item {index}: expected float32 [N, 3+] points, got {array.shape}"
                )
            xyz = array[:, :3].astype(np.float32)
            if not np.all(np.isfinite(xyz)):
                raise ValueError(f"{self.modality} item {index}: points contain NaN or inf")
            if xyz.shape[0] != count:
                xyz = xyz[resample_indices(xyz.shape[0], count)]
            out.append(torch.from_numpy(np.ascontiguousarray(normalize_points(xyz, self.cfg.pc_normalize))))
        return torch.stack(out).unsqueeze(1)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = int(self.cfg.feature_layer)
        tokens, hidden = self.backbone(inputs, output_hidden_states=layer != -1)
        if layer != -1:
            tokens = hidden[layer]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
