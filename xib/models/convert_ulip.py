"""ULIP-2 PointBERT (the paper's 3D encoder) into xib's PointBERT.

The ULIP-2 release (`ULIP-2_pointbert_last.pt`: `{"state_dict": {"module.point_encoder.*", "module.pc_projection",
...text and image towers...}}`) and LAVIS's `ulip2_pointbert` (`ULIP_WITH_IMAGE`: `point_encoder.*`,
`pc_projection`) share one naming. The map:

| ULIP | xib |
|---|---|
| `point_encoder.encoder.first_conv.{0,1,3}` (Conv1d k=1, BatchNorm1d, Conv1d) | `patch_embed.first.{0,1,3}` (Linear, BatchNorm, Linear) |
| `point_encoder.encoder.second_conv.{0,1,3}` | `patch_embed.second.{0,1,3}` |
| `point_encoder.reduce_dim`, `cls_token`, `cls_pos`, `pos_embed.{0,2}`, `norm` | same names |
| `point_encoder.blocks.blocks.i.attn.qkv` (no bias) | `blocks.i.self_attn.in_proj_weight` (bias 0) |
| `...attn.proj`, `norm1`, `norm2`, `mlp.fc1`, `mlp.fc2` | `self_attn.out_proj`, `norm1`, `norm2`, `linear1`, `linear2` |
| `pc_projection` [768, 512] | `pc_projection`: the 512-d global token X-InstructBLIP's 3D Q-Former reads |

Sizes come from the tensors' shapes; heads, groups and points (not visible in shapes) from
`ULIP2_ARCH` unless given. Keys of ULIP's image and text towers are left out; any other key is an
error that names it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from xib.errors import XibError
from xib.models.encoders.pointbert import PointBERT, PointBERTConfig
from xib.models.state_dicts import check_state_dict

# ULIP-2's PointTransformer_8192point.yaml: trans_dim 384, depth 12, heads 6, 512 groups of 32, encoder_dims 256.
ULIP2_ARCH = PointBERTConfig(
    num_groups=512,
    group_size=32,
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    intermediate_size=1536,
    sample_points=8192,
    pointnet_dim=128,
    layer_norm_eps=1e-5,  # torch's LayerNorm default, which ULIP uses
    encoder_dims=256,
    global_dim=512,
)
# ULIP's contrastive image and text towers: not part of the 3D encoder.
_OTHER_TOWERS = re.compile(
    r"^(visual\.|transformer\.|token_embedding\.|positional_embedding$|ln_final\.|image_projection$|"
    r"text_projection$|logit_scale$)"
)
_CONV = {"first_conv": "first", "second_conv": "second"}
_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.fc1": "linear1",
    "mlp.fc2": "linear2",
}


def ulip_state_dict(checkpoint: Any, where: str) -> dict[str, torch.Tensor]:
    """The 3D encoder's tensors of a ULIP / LAVIS checkpoint, `module.` stripped, `point_encoder.` kept."""
    state = checkpoint
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    elif isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XibError(f"{where}: expected a state dict (or a dict with `state_dict`) of tensors")
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for prefix in ("pc_encoder.", "ulip."):  # LAVIS's attribute names around ULIP_WITH_IMAGE
            key = key.removeprefix(prefix)
        if _OTHER_TOWERS.match(key):
            continue
        out[key] = value
    return out


def infer_config(state: dict[str, torch.Tensor], base: PointBERTConfig = ULIP2_ARCH) -> PointBERTConfig:
    """Widths and depth from the tensors' shapes; what shapes cannot show stays as in `base`."""
    pe = "point_encoder."
    layers = {int(m.group(1)) for k in state if (m := re.match(rf"{pe}blocks\.blocks\.(\d+)\.", k))}
    encoder_dims = state[f"{pe}reduce_dim.weight"].shape[1] if f"{pe}reduce_dim.weight" in state else 0
    hidden = int(state[f"{pe}cls_token"].shape[-1]) if f"{pe}cls_token" in state else base.hidden_size
    return replace(
        base,
        hidden_size=hidden,
        num_hidden_layers=len(layers) or base.num_hidden_layers,
        intermediate_size=int(state[f"{pe}blocks.blocks.0.mlp.fc1.weight"].shape[0])
        if f"{pe}blocks.blocks.0.mlp.fc1.weight" in state
        else base.intermediate_size,
        pointnet_dim=int(state[f"{pe}encoder.first_conv.0.weight"].shape[0])
        if f"{pe}encoder.first_conv.0.weight" in state
        else base.pointnet_dim,
        encoder_dims=int(encoder_dims),
        global_dim=int(state["pc_projection"].shape[1]) if "pc_projection" in state else 0,
    )


def map_ulip_keys(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """ULIP names -> xib names (conv kernels of size 1 become Linear weights; qkv gets a zero bias)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key == "pc_projection":
            out[key] = value
            continue
        if not key.startswith("point_encoder."):
            unknown.append(key)
            continue
        name = key.removeprefix("point_encoder.")
        conv = re.match(r"encoder\.(first_conv|second_conv)\.(\d)\.(.+)$", name)
        block = re.match(r"blocks\.blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
        if conv:
            target = f"patch_embed.{_CONV[conv.group(1)]}.{conv.group(2)}.{conv.group(3)}"
            out[target] = value.squeeze(-1) if value.dim() == 3 else value
        elif block:
            index, part, kind = block.groups()
            if part == "attn.qkv":
                out[f"blocks.{index}.self_attn.in_proj_{kind}"] = value
            elif part in _BLOCK:
                out[f"blocks.{index}.{_BLOCK[part]}.{kind}"] = value
            else:
                unknown.append(key)
        elif re.match(r"(reduce_dim\.|cls_token$|cls_pos$|pos_embed\.[02]\.|norm\.)", name):
            out[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise XibError(f"{where}: keys that are not ULIP PointBERT's: {sorted(unknown)[:10]}")
    for key in [k for k in out if k.endswith("self_attn.in_proj_weight")]:
        bias = key.replace("in_proj_weight", "in_proj_bias")
        out.setdefault(bias, torch.zeros(out[key].shape[0], dtype=out[key].dtype))
    return out


def pointbert_from_ulip(checkpoint: Any, where: str, base: PointBERTConfig = ULIP2_ARCH) -> PointBERT:
    """An xib PointBERT holding a ULIP PointBERT's weights; every weight must be there, with its shape."""
    state = ulip_state_dict(checkpoint, where)
    mapped = map_ulip_keys(state, where)
    model = PointBERT(infer_config(state, base))
    check_state_dict(model.state_dict(), mapped, where, "ULIP")
    model.load_state_dict(mapped)
    return model.eval()


def convert_ulip_pointbert(checkpoint_file: str | Path, out_dir: str | Path, **arch: int) -> Path:
    """Write `out_dir` (config.json + model.safetensors, `family: pointbert`) from a ULIP checkpoint."""
    from xib.io import atomic_path
    from xib.models.lavis_checkpoint import read_torch_checkpoint

    base = replace(ULIP2_ARCH, **arch) if arch else ULIP2_ARCH
    model = pointbert_from_ulip(read_torch_checkpoint(checkpoint_file), str(checkpoint_file), base)
    out = Path(out_dir)
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
    return out
