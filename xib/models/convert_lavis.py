"""Released X-InstructBLIP projections (LAVIS format, one `.pth` per modality) into xib checkpoints.

A release file (`image_qformer.pth`, `pc_qformer.pth`, `audio_qformer_improved.pth`, `video_qformer.pth`,
the `_nocue` ablations, and the linear variants) holds, for modality `m`, optionally under `model`:

| LAVIS | xib projection |
|---|---|
| `m_Qformer.bert.embeddings.{word_embeddings,position_embeddings,LayerNorm}` | `qformer.embeddings.{word_embeddings,position_embeddings,layernorm}` |
| `m_Qformer.bert.encoder.layer.i.{attention,crossattention}.self.*` | `qformer.encoder.layer.i.{attention,crossattention}.attention.*` |
| `m_Qformer.bert.encoder.layer.i.*` (the rest) | `qformer.encoder.layer.i.*` (same names) |
| `m_query_tokens` [1, K, 768] | `query_tokens` |
| `m_ln` (LayerNorm over the encoder width) | `layernorm` |
| `m_llm_proj` (Linear 768 -> LLM width) | `language_projection` |
| linear variant: `m_projection` (Linear encoder width -> K x d), `m_llm_proj` (d -> LLM width) | `to_tokens`, `language_projection` |

Read with `torch.load(weights_only=True)`: a file holding any pickled object is refused. Every tensor
must map onto the projection and every weight of the projection must come from the file; otherwise
the conversion stops and names the keys. Sizes (K, widths, layers, cross-attention frequency,
Q-Former vocabulary) come from the tensors; heads and dropout from `model.projection`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from xib.errors import XibError
from xib.models.config import ProjectionConfig
from xib.models.projectors import Projection, build_projection
from xib.models.state_dicts import check_state_dict

MODALITIES = ("image", "pc", "audio", "video")
# Saved by BERT beside the weights; not a weight.
_BUFFERS = re.compile(r"\.position_ids$")


def release_state_dict(checkpoint: Any, where: str) -> dict[str, torch.Tensor]:
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise XibError(
            f"{where}: expected a dict of tensors (or a dict with `model`), got {type(state).__name__}"
        )
    bad = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise XibError(f"{where}: entries that are not tensors: {bad[:10]}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _qformer_key(name: str) -> str:
    name = name.removeprefix("bert.")
    name = name.replace("embeddings.LayerNorm.", "embeddings.layernorm.")
    name = re.sub(r"\.(attention|crossattention)\.self\.", r".\1.attention.", name)
    return "qformer." + name


def map_release_keys(
    state: dict[str, torch.Tensor], modality: str, where: str
) -> tuple[str, dict[str, torch.Tensor]]:
    """(kind, xib state dict) of modality `modality`'s parts; any other key is an error naming it."""
    m = modality
    out: dict[str, torch.Tensor] = {}
    unknown = []
    kinds = set()
    for key, value in state.items():
        if key.startswith(f"{m}_Qformer."):
            if _BUFFERS.search(key):
                continue
            name = key.removeprefix(f"{m}_Qformer.")
            if name.startswith("cls."):  # the LM head LAVIS drops (Qformer.cls = None)
                unknown.append(key)
                continue
            out[_qformer_key(name)] = value
            kinds.add("qformer")
        elif key == f"{m}_query_tokens":
            out["query_tokens"] = value
            kinds.add("qformer")
        elif key.startswith(f"{m}_ln."):
            out["layernorm." + key.removeprefix(f"{m}_ln.")] = value
        elif key.startswith(f"{m}_llm_proj."):
            out["language_projection." + key.removeprefix(f"{m}_llm_proj.")] = value
        elif key.startswith(f"{m}_projection."):
            out["to_tokens." + key.removeprefix(f"{m}_projection.")] = value
            kinds.add("linear")
        else:
            unknown.append(key)
    if unknown:
        others = sorted({k.split("_", 1)[0] for k in unknown if k.split("_", 1)[0] in MODALITIES} - {m})
        hint = f" (this file holds {others} parts: pass modality={others[0]})" if others else ""
        raise XibError(
            f"{where}: keys that are not {m}'s X-InstructBLIP projection: {sorted(unknown)[:10]}{hint}"
        )
    if len(kinds) != 1:
        raise XibError(
            f"{where}: no {m}_Qformer / {m}_projection tensors found"
            if not kinds
            else f"{where}: both a Q-Former and a linear projection for {m}"
        )
    return kinds.pop(), out


def release_projection_config(
    kind: str, state: dict[str, torch.Tensor], base: ProjectionConfig, where: str
) -> tuple[ProjectionConfig, int, int]:
    """(config, encoder_dim, llm_hidden) with the sizes the tensors show."""
    for needed in ("layernorm.weight", "language_projection.weight"):
        if needed not in state:
            raise XibError(f"{where}: missing key {needed!r} (LAVIS: `<m>_ln` / `<m>_llm_proj`)")
    encoder_dim = int(state["layernorm.weight"].shape[0])
    llm_hidden, width = (int(x) for x in state["language_projection.weight"].shape)
    if kind == "linear":
        if "to_tokens.weight" not in state:
            raise XibError(f"{where}: missing key 'to_tokens.weight' (LAVIS: `<m>_projection`)")
        tokens = int(state["to_tokens.weight"].shape[0]) // width
        config = replace(base, kind="linear", num_query_tokens=tokens, linear_hidden=width)
        return config, encoder_dim, llm_hidden
    for needed in (
        "query_tokens",
        "qformer.embeddings.word_embeddings.weight",
        "qformer.embeddings.layernorm.weight",
    ):
        if needed not in state:
            raise XibError(f"{where}: missing key {needed!r}")
    hidden = int(state["qformer.embeddings.layernorm.weight"].shape[0])
    if state["query_tokens"].dim() != 3 or state["query_tokens"].shape[2] != hidden:
        raise XibError(
            f"{where}: query_tokens {tuple(state['query_tokens'].shape)} do not match the Q-Former's width {hidden}"
        )
    layers = sorted(
        {int(x.group(1)) for k in state if (x := re.match(r"qformer\.encoder\.layer\.(\d+)\.", k))}
    )
    cross = [i for i in layers if f"qformer.encoder.layer.{i}.crossattention.attention.query.weight" in state]
    if not cross:
        raise XibError(f"{where}: the Q-Former has no cross-attention layers")
    frequency = cross[1] - cross[0] if len(cross) > 1 else max(1, len(layers))
    config = replace(
        base,
        kind="qformer",
        num_query_tokens=int(state["query_tokens"].shape[1]),
        qformer_hidden=hidden,
        qformer_layers=len(layers),
        qformer_intermediate=int(state["qformer.encoder.layer.0.intermediate_query.dense.weight"].shape[0]),
        cross_attention_frequency=frequency,
        qformer_vocab_size=int(state["qformer.embeddings.word_embeddings.weight"].shape[0]),
        num_query_tokens_by_modality={},
    )
    return config, encoder_dim, llm_hidden


def projection_from_release(
    checkpoint: Any, modality: str, base: ProjectionConfig, where: str
) -> tuple[Projection, str]:
    """(projection holding the released weights, kind); keys and shapes checked both ways."""
    if modality not in MODALITIES:
        raise XibError(f"modality={modality!r}: expected one of {MODALITIES}")
    kind, mapped = map_release_keys(release_state_dict(checkpoint, where), modality, where)
    config, encoder_dim, llm_hidden = release_projection_config(kind, mapped, base, where)
    projection = build_projection(config, encoder_dim, llm_hidden)
    check_state_dict(projection.state_dict(), mapped, where, "projection")
    projection.load_state_dict({k: v.float() for k, v in mapped.items()})
    return projection, kind


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_release(
    checkpoint_file: str | Path, modality: str, base: ProjectionConfig, out_dir: str | Path
) -> dict[str, Any]:
    """Write an xib projection checkpoint (`projection.safetensors` + `projection.json`) from a release file."""
    from xib.models.checkpoint import save_projection
    from xib.models.lavis_checkpoint import read_torch_checkpoint

    file = Path(checkpoint_file)
    projection, kind = projection_from_release(read_torch_checkpoint(file), modality, base, str(file))
    trained_with_cue = "nocue" not in file.name.lower()
    meta = {
        "source": {
            "format": "lavis-xinstructblip",
            "file": file.name,
            "sha256": _sha256(file),
            "kind": kind,
            "trained_with_cue": trained_with_cue,
        },
    }
    save_projection(out_dir, modality, projection, meta)
    return {
        "modality": modality,
        "kind": kind,
        "out": str(out_dir),
        "num_query_tokens": projection.num_tokens,
        "encoder_dim": projection.encoder_dim,
        "llm_hidden": projection.llm_hidden,
        "trained_with_cue": trained_with_cue,
    }
