"""LAVIS's EVA-CLIP ViT-g/14 (`eva_vit_g.pth`) into transformers' `Blip2VisionModel` layout.

LAVIS builds `VisionTransformer(depth=39)` and loads `eva_vit_g.pth` (40 blocks) with strict=False,
so BLIP-2 and X-InstructBLIP read the output of block 39, without a final norm; `ln_vision` (in
X-InstructBLIP: each modality's own LayerNorm, kept in the projection) follows. The map:

| eva_vit_g | Blip2VisionModel |
|---|---|
| `cls_token`, `pos_embed`, `patch_embed.proj` | `embeddings.class_embedding`, `.position_embedding`, `.patch_embedding` |
| `blocks.i.attn.qkv.weight`, `q_bias`, `v_bias` | `encoder.layers.i.self_attn.qkv.weight`, `.bias` = [q_bias, 0, v_bias] (EVA has no k bias) |
| `blocks.i.attn.proj`, `norm1`, `norm2`, `mlp.fc1`, `mlp.fc2` | `self_attn.projection`, `layer_norm1`, `layer_norm2`, `mlp.fc1`, `mlp.fc2` |
| (none) | `post_layernorm`: weight 1, bias 0 |

`Blip2VisionModel` always ends in `post_layernorm`; with unit weight and zero bias it only
normalises, and the projection's own LayerNorm (X-InstructBLIP's `<modality>_ln`, loaded by
`xib convert lavis`) then does what `ln_vision` does (LayerNorm of a LayerNorm's output equals the
LayerNorm itself up to its eps). Blocks past `layers` are dropped as LAVIS drops them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from xib.errors import XibError
from xib.models.state_dicts import check_state_dict

EVA_G_LAYERS = 39  # LAVIS's create_eva_vit_g: depth=39 of the checkpoint's 40 blocks
EVA_G_HEADS = 16  # 1408 // 88
_BLOCK = {
    "attn.proj": "self_attn.projection",
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def eva_to_blip2_vision(
    state: dict[str, torch.Tensor], where: str, layers: int = EVA_G_LAYERS, heads: int = EVA_G_HEADS
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(Blip2VisionModel state dict, its config kwargs) from an EVA ViT state dict."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XibError(f"{where}: expected a state dict of tensors (LAVIS's eva_vit_g.pth)")
    state = {k.removeprefix("module.").removeprefix("visual_encoder."): v for k, v in state.items()}
    found = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if len(found) < layers:
        raise XibError(f"{where}: {len(found)} blocks, {layers} wanted")
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        block = re.match(r"blocks\.(\d+)\.(.+)$", key)
        if block:
            index, rest = int(block.group(1)), block.group(2)
            if index >= layers:
                continue  # dropped, as LAVIS drops it
            prefix = f"encoder.layers.{index}."
            part = rest.rsplit(".", 1)
            if rest == "attn.qkv.weight":
                out[prefix + "self_attn.qkv.weight"] = value
            elif rest in ("attn.q_bias", "attn.v_bias"):
                continue  # joined below
            elif len(part) == 2 and part[0] in _BLOCK:
                out[prefix + f"{_BLOCK[part[0]]}.{part[1]}"] = value
            else:
                unknown.append(key)
        elif key == "cls_token":
            out["embeddings.class_embedding"] = value
        elif key == "pos_embed":
            out["embeddings.position_embedding"] = value
        elif key.startswith("patch_embed.proj."):
            out["embeddings.patch_embedding." + key.rsplit(".", 1)[1]] = value
        else:
            unknown.append(key)
    if unknown:
        raise XibError(f"{where}: keys that are not EVA ViT's: {sorted(unknown)[:10]}")
    for index in range(layers):
        q, v = state.get(f"blocks.{index}.attn.q_bias"), state.get(f"blocks.{index}.attn.v_bias")
        if q is None or v is None:
            raise XibError(f"{where}: blocks.{index}.attn.q_bias / v_bias missing")
        out[f"encoder.layers.{index}.self_attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    hidden = int(out["embeddings.class_embedding"].shape[-1])
    out["post_layernorm.weight"] = torch.ones(hidden)
    out["post_layernorm.bias"] = torch.zeros(hidden)
    patch = out["embeddings.patch_embedding.weight"]
    grid = int(round((out["embeddings.position_embedding"].shape[1] - 1) ** 0.5))
    config = {
        "hidden_size": hidden,
        "intermediate_size": int(out["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "patch_size": int(patch.shape[-1]),
        "image_size": int(patch.shape[-1]) * grid,
        "num_channels": int(patch.shape[1]),
        "qkv_bias": True,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
    }
    return out, config


def blip2_vision_from_eva(
    state: dict[str, torch.Tensor], where: str, layers: int = EVA_G_LAYERS, heads: int = EVA_G_HEADS
) -> Any:
    """A `Blip2VisionModel` holding the EVA weights; every weight must be there, with its shape."""
    from transformers import Blip2VisionConfig, Blip2VisionModel

    mapped, config = eva_to_blip2_vision(state, where, layers, heads)
    model = Blip2VisionModel(Blip2VisionConfig(**config))
    check_state_dict(model.state_dict(), mapped, where, "EVA")
    model.load_state_dict(mapped)
    return model.eval()


def convert_eva_vit(
    checkpoint_file: str | Path, out_dir: str | Path, layers: int = EVA_G_LAYERS, heads: int = EVA_G_HEADS
) -> Path:
    """Write `out_dir` (a `save_pretrained` Blip2VisionModel, `family: blip2_vision`) from eva_vit_g.pth."""
    from xib.io import atomic_path
    from xib.models.lavis_checkpoint import read_torch_checkpoint

    checkpoint = read_torch_checkpoint(checkpoint_file)
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict):
        checkpoint = checkpoint["model"]
    model = blip2_vision_from_eva(checkpoint, str(checkpoint_file), layers, heads)
    out = Path(out_dir)
    with atomic_path(out) as tmp:
        model.save_pretrained(str(tmp))
    return out
