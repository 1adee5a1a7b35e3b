"""Projection checkpoints (only what trains) and composing a model from them.

A checkpoint directory holds `projection.safetensors` (the projection's state dict) and
`projection.json`: the modality, the projection kind and config, `encoder_dim`, `llm_hidden`, the
sha256 of the weights file, and provenance (git commit, data hashes, encoder fingerprint, step, ...).
At inference an LLM, the encoders and any set of modality checkpoints compose into one model.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.config import for_modality
from xib.errors import XibError
from xib.hashing import sha256_file
from xib.io import atomic_path, write_json
from xib.models.projectors import (
    Projection,
    as_projection_config,
    build_projection,
    load_pretrained_qformer,
)

if TYPE_CHECKING:
    from xib.models.config import ModelConfig, ProjectionConfig

WEIGHTS_FILE = "projection.safetensors"
INFO_FILE = "projection.json"
FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD of the checkout the code runs from, with `+dirty` when tracked files changed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_projection(
    directory: str | Path, modality: str, projection: Projection, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write the projection's weights and description into `directory`; returns the JSON path.

    `meta` is provenance (e.g. `data_hashes`, `encoder_fingerprint`, `step`, `run_id`); the git commit
    and the time are added. Weights go first and the JSON records their sha256, so a reader never
    pairs a description with other weights.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in projection.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"modality": modality, "kind": projection.kind})
    provenance = {
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **dict(meta or {}),
    }
    info = {
        "format": FORMAT_VERSION,
        "modality": modality,
        **projection.describe(),
        "weights_sha256": sha256_file(weights),
        "provenance": provenance,
    }
    write_json(directory / INFO_FILE, info)
    return directory / INFO_FILE


def read_projection_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / INFO_FILE
    if not path.is_file():
        raise XibError(f"{path}: no projection checkpoint here (run `xib align`)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise XibError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("modality", "kind", "config", "encoder_dim", "llm_hidden", "weights_sha256"):
        if key not in info:
            raise XibError(f"{path}: missing key {key!r}")
    return info


def load_projection(directory: str | Path, map_location: str = "cpu") -> tuple[Projection, dict[str, Any]]:
    """(projection, info) exactly as saved; the weights must match the recorded sha256."""
    from safetensors.torch import load_file

    directory = Path(directory)
    info = read_projection_info(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise XibError(f"{weights}: missing (the checkpoint has {INFO_FILE} only)")
    if sha256_file(weights) != info["weights_sha256"]:
        raise XibError(
            f"{weights}: sha256 differs from {INFO_FILE} (weights and description do not belong together)"
        )
    config = as_projection_config(info["config"])
    if config.kind != info["kind"]:
        raise XibError(f"{directory / INFO_FILE}: kind {info['kind']!r} vs config kind {config.kind!r}")
    projection = build_projection(config, int(info["encoder_dim"]), int(info["llm_hidden"]))
    state = load_file(str(weights), device=map_location)
    missing, unexpected = projection.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise XibError(f"{weights}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return projection, info


def resolve_qformer_vocab(proj_cfg: ProjectionConfig, tokenizer: Any, qformer_tokenizer: Any = None) -> int:
    """The Q-Former vocabulary size: the configured one, or the size of the tokenizer feeding it."""
    size = int(as_projection_config(proj_cfg).qformer_vocab_size)
    if size > 0:
        return size
    return len(qformer_tokenizer if qformer_tokenizer is not None else tokenizer)


def load_qformer_tokenizer(proj_cfg: ProjectionConfig) -> Any:
    """The Q-Former's own tokenizer when `projection.qformer_tokenizer` names one, else None."""
    path = str(as_projection_config(proj_cfg).qformer_tokenizer)
    if not path:
        return None
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise XibError(f"{path}: model.projection.qformer_tokenizer is not a directory")
    return AutoTokenizer.from_pretrained(path, local_files_only=True, truncation_side="left")


def new_projection(
    model_cfg: ModelConfig,
    modality: str,
    encoder_dim: int,
    llm_hidden: int,
    qformer_vocab_size: int,
    init_dir: str | Path | None = None,
) -> tuple[Projection, dict[str, Any]]:
    """A projection ready to train, and a report of how it was initialised.

    `init_dir`: a trained xib projection checkpoint to start from (the paper: video starts from the
    image projection; `modality.init_from`); else `model.projection.init_from` (a BLIP-2/InstructBLIP
    checkpoint, cross-attention skipped for the modalities in `init_skip_cross_attention`); else random.
    """
    proj_cfg = as_projection_config(model_cfg.projection)
    proj_cfg = replace(proj_cfg, num_query_tokens=int(for_modality(proj_cfg, "num_query_tokens", modality)))
    projection = build_projection(proj_cfg, encoder_dim, llm_hidden, qformer_vocab_size=qformer_vocab_size)
    if init_dir:
        source, info = load_projection(init_dir)
        have, want = source.weight_layout(), projection.weight_layout()
        if have != want:
            flat_have = {**have.pop("config"), **have}
            flat_want = {**want.pop("config"), **want}
            differ = ", ".join(
                f"{k} {flat_have.get(k)!r} vs {flat_want.get(k)!r}"
                for k in sorted(set(flat_have) | set(flat_want))
                if flat_have.get(k) != flat_want.get(k)
            )
            raise XibError(
                f"{Path(init_dir) / INFO_FILE}: its projection differs from the one {modality} needs "
                f"({differ}); cannot initialise from it"
            )
        projection.load_state_dict(source.state_dict())
        return projection, {"source": str(init_dir), "kind": "xib", "from_modality": info["modality"]}
    if proj_cfg.init_from:
        skip = modality in set(proj_cfg.init_skip_cross_attention)
        report = load_pretrained_qformer(projection, proj_cfg.init_from, skip_cross_attention=skip)
        return projection, {"source": proj_cfg.init_from, "kind": "hf", **report}
    return projection, {"source": "", "kind": "random"}


def compose_model(
    model_cfg: ModelConfig, checkpoint_dirs: Mapping[str, str | Path], with_encoders: bool = False
) -> Any:
    """X-InstructBLIP from the frozen LLM (`model.llm`) and one projection checkpoint per modality.

    With `with_encoders`, the frozen encoders are built too (`model.encoders`), and each
    checkpoint's recorded encoder fingerprint must match the encoder it will read from.
    """
    from torch import nn

    from xib.models.llm import freeze, load_llm
    from xib.models.xinstructblip import XInstructBLIP

    llm, tokenizer = load_llm(model_cfg.llm)
    projections: dict[str, Projection] = {}
    infos: dict[str, dict[str, Any]] = {}
    for modality, directory in checkpoint_dirs.items():
        projection, info = load_projection(directory)
        if info["modality"] != modality:
            raise XibError(
                f"{Path(directory) / INFO_FILE}: a {info['modality']} projection, asked for {modality}"
            )
        projections[modality] = projection
        infos[modality] = info
    model = XInstructBLIP(
        llm, tokenizer, projections, model_cfg, load_qformer_tokenizer(model_cfg.projection)
    )
    model.checkpoint_info = infos
    if with_encoders:
        from xib.models.encoders import build_encoder

        encoders: dict[str, nn.Module] = {}
        for modality in checkpoint_dirs:
            encoder = freeze(build_encoder(modality, model_cfg.encoders[modality]))
            recorded = infos[modality].get("provenance", {}).get("encoder_fingerprint")
            if recorded and recorded != encoder.fingerprint():
                raise XibError(
                    f"{Path(checkpoint_dirs[modality]) / INFO_FILE}: trained on encoder {recorded}, "
                    f"but model.encoders.{modality} is {encoder.fingerprint()}"
                )
            encoders[modality] = encoder
        model.encoders = nn.ModuleDict(encoders)
    return model
