"""DeepSpeed checkpoints that can be trusted after a crash, and the export of the trained projection.

Every rank writes its ZeRO shard through `engine.save_checkpoint` (which ends on a barrier); only
then does rank 0 write `xib_complete.json` listing every file of the tag with its size. A tag
without that marker, or whose files no longer match it, was torn (a crash while saving, a full
disk, a copy cut short) and is skipped in favour of the previous complete one, with a message.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xib.errors import XibError
from xib.io import write_json

log = logging.getLogger(__name__)

MARKER = "xib_complete.json"
TAG_RE = re.compile(r"^step(\d{8})$")


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def _files_of(tag_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(tag_dir)): p.stat().st_size
        for p in sorted(tag_dir.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def save(
    engine: Any,
    ckpt_dir: Path,
    step: int,
    meta: dict[str, Any],
    rank: int,
    client_state: dict[str, Any] | None = None,
) -> Path:
    """All ranks call this. Writes shards, then (rank 0, after every rank finished) the marker."""
    import torch.distributed as dist

    tag = tag_for(step)
    tag_dir = Path(ckpt_dir) / tag
    if rank == 0 and tag_dir.exists():  # a torn attempt at this very step: start it clean
        shutil.rmtree(tag_dir)
    if dist.is_initialized():
        dist.barrier()
    engine.save_checkpoint(
        str(ckpt_dir),
        tag=tag,
        client_state={**(client_state or {}), "step": step},
    )
    if rank == 0:
        write_json(tag_dir / MARKER, {"step": step, "files": _files_of(tag_dir), **meta})
    if dist.is_initialized():
        dist.barrier()
    return tag_dir


@dataclass
class Found:
    tag: str | None
    step: int
    skipped: list[str]  # one human-readable reason per skipped tag


# Settings that change how often the run logs or saves, not what it learns: resuming across them is fine.
_NOT_RECIPE = {
    "checkpoint_every",
    "eval_every",
    "log_every",
    "keep_checkpoints",
    "eval_batches",
    "eval_samples",
}


def recipe_hash(cfg: Any) -> str:
    """What the trained weights depend on: the training recipe, the projection, the prompts, the
    modality and its instruction data. A checkpoint of another recipe is never resumed."""
    import hashlib

    from omegaconf import OmegaConf

    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    assert isinstance(train_cfg, dict)
    train = {k: v for k, v in train_cfg.items() if k not in _NOT_RECIPE}
    recipe = {
        "train": train,
        "projection": OmegaConf.to_container(cfg.model.projection, resolve=True),
        "prompt": OmegaConf.to_container(cfg.model.prompt, resolve=True),
        "modality": OmegaConf.to_container(cfg.modality, resolve=True),
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    instructions = Path(cfg.paths.data) / "instruct" / str(cfg.modality.name) / "train.jsonl"
    if instructions.is_file():
        digest.update(instructions.read_bytes())
    return digest.hexdigest()[:16]


def check(tag_dir: Path, expect: dict[str, Any]) -> str | None:
    """None when the checkpoint is complete and compatible; otherwise why it is not."""
    marker = tag_dir / MARKER
    if not marker.is_file():
        return "no completion marker (the run stopped while saving it)"
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return "unreadable completion marker"
    for name, size in info.get("files", {}).items():
        path = tag_dir / name
        if not path.is_file():
            return f"file {name} is missing"
        if path.stat().st_size != size:
            return f"file {name} is {path.stat().st_size} bytes, expected {size} (truncated?)"
    for key, value in expect.items():
        if info.get(key) != value:
            return f"saved with {key}={info.get(key)!r}, this run uses {value!r}"
    return None


def find_latest(ckpt_dir: Path, expect: dict[str, Any]) -> Found:
    """The newest complete, compatible checkpoint tag under `ckpt_dir` (None if there is none)."""
    ckpt_dir = Path(ckpt_dir)
    tags = sorted(
        (p for p in ckpt_dir.iterdir() if p.is_dir() and TAG_RE.match(p.name)) if ckpt_dir.is_dir() else [],
        key=lambda p: p.name,
        reverse=True,
    )
    skipped: list[str] = []
    for tag_dir in tags:
        problem = check(tag_dir, expect)
        if problem is None:
            return Found(tag_dir.name, int(TAG_RE.match(tag_dir.name).group(1)), skipped)  # type: ignore[union-attr]
        skipped.append(f"checkpoint {tag_dir} skipped: {problem}")
    return Found(None, 0, skipped)


def load(engine: Any, ckpt_dir: Path, tag: str) -> dict[str, Any]:
    """Load a tag `find_latest` accepted into `engine`; returns the client state saved with it."""
    load_path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag, load_module_strict=True)
    if load_path is None:
        raise XibError(f"{Path(ckpt_dir) / tag}: DeepSpeed could not load this checkpoint")
    return dict(client or {})


def prune(ckpt_dir: Path, keep: int, expect: dict[str, Any]) -> None:
    """Rank 0: delete complete checkpoints beyond the newest `keep`, and torn ones older than those."""
    ckpt_dir = Path(ckpt_dir)
    tags = sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and TAG_RE.match(p.name)), reverse=True)
    kept = 0
    for tag_dir in tags:
        if check(tag_dir, expect) is None and kept < max(keep, 1):
            kept += 1
            continue
        if kept >= 1:  # never delete anything until a newer complete checkpoint exists
            shutil.rmtree(tag_dir, ignore_errors=True)


def export_projection(
    setup: Any, out_dir: Path, meta: dict[str, Any], zero_stage: int, rank: int
) -> list[Path]:
    """All ranks call this: gather the projection (ZeRO-3) and let rank 0 write it via xib.models.checkpoint."""
    import contextlib

    import torch.distributed as dist

    if zero_stage == 3:
        import deepspeed

        context: Any = deepspeed.zero.GatheredParameters(
            list(setup.projection.parameters()), modifier_rank=None
        )
    else:
        context = contextlib.nullcontext()
    written: list[Path] = []
    with context:
        if rank == 0:
            from xib.models.checkpoint import save_projection

            save_projection(out_dir, setup.modality, setup.projection, meta)
            written = [Path(out_dir) / "projection.safetensors", Path(out_dir) / "projection.json"]
    if dist.is_initialized():
        dist.barrier()
    return written
