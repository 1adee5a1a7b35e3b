"""DeepSpeed checkpoints that can be trusted after a crash, and the export of the trained projection.

Every rank writes its ZeRO shard through `engine.save_checkpoint` (which ends on a barrier); only
then does rank 0 write `xib_complete.json` listing every file of the tag with its size and sha256,
signed with the job's key (xib.train.signing). A tag without that marker, or with files missing
or cut short, was torn (a crash while saving, a full disk, a copy cut short) and is skipped in
favour of the previous complete one, with a message; a tag whose files or signature do not match
its marker is refused (XibError) before DeepSpeed opens any of its files. DeepSpeed's files are
then read with `torch.load(weights_only=True)` (tensors and three DeepSpeed classes allowed), not
with the unpickler DeepSpeed 0.19.8 uses by default (`weights_only=False`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.io import write_json
from xib.train import signing

if TYPE_CHECKING:
    from xib.config import XibConfig

log = logging.getLogger(__name__)

MARKER = "xib_complete.json"
TAG_RE = re.compile(r"^step(\d{8})$")


def tag_for(step: int) -> str:
    return f"step{step:08d}"


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
        files = signing.manifest(tag_dir, exclude=MARKER)
        write_json(tag_dir / MARKER, signing.sign({"step": step, "files": files, **meta}))
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


def recipe_hash(cfg: XibConfig) -> str:
    """What the trained weights depend on: the training recipe, the projection, the prompts, the
    modality and its instruction data. A checkpoint of another recipe is never resumed."""
    import hashlib

    from xib.config import to_dict

    train = {k: v for k, v in to_dict(cfg.train).items() if k not in _NOT_RECIPE}
    recipe = {
        "train": train,
        "projection": to_dict(cfg.model.projection),
        "prompt": to_dict(cfg.model.prompt),
        "modality": to_dict(cfg.modality),
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    instructions = Path(cfg.paths.data) / "instruct" / cfg.modality.name / "train.jsonl"
    if instructions.is_file():
        digest.update(instructions.read_bytes())
    return digest.hexdigest()[:16]


def expectations(cfg: XibConfig, world: int, features_key: str, llm_fp: str) -> dict[str, Any]:
    """What a checkpoint must have been saved with to be resumed by this run."""
    return {
        "world_size": world,
        "zero_stage": cfg.train.zero_stage,
        "modality": cfg.modality.name,
        "recipe": recipe_hash(cfg),
        # the frozen inputs: a checkpoint trained on another encoder's features or another LLM is stale
        "features": features_key,
        "llm": llm_fp,
    }


def marker(tag_dir: Path) -> dict[str, Any]:
    """A tag's completion marker ({} when it has none or it is unreadable)."""
    try:
        info = json.loads((Path(tag_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def check(tag_dir: Path, expect: dict[str, Any]) -> str | None:
    """None when the checkpoint is complete, compatible and this job's; otherwise why it is not
    loadable (torn or of another run). Raises signing.Tampered for files or a signature that do
    not match the marker."""
    info = marker(tag_dir)
    if not (tag_dir / MARKER).is_file():
        return "no completion marker (the run stopped while saving it)"
    if not info:
        return "unreadable completion marker"
    for key, value in expect.items():
        if info.get(key) != value:
            return f"saved with {key}={info.get(key)!r}, this run uses {value!r}"
    signing.verify_signature(info)
    files = info.get("files")
    if not isinstance(files, dict):
        return "its marker lists no files"
    return signing.verify_files(tag_dir, files, exclude=MARKER)


def find_latest(ckpt_dir: Path, expect: dict[str, Any]) -> Found:
    """The newest complete, compatible checkpoint tag under `ckpt_dir` (None if there is none).
    A tampered one is refused with an XibError: resuming from an older one would hide it."""
    ckpt_dir = Path(ckpt_dir)
    skipped: list[str] = []
    for tag_dir in _tags(ckpt_dir):
        try:
            problem = check(tag_dir, expect)
        except signing.Tampered as err:
            raise XibError(
                f"checkpoint {tag_dir} refused, nothing loaded: {err}; "
                "delete that folder to resume from an older checkpoint"
            ) from None
        if problem is None:
            return Found(tag_dir.name, int(TAG_RE.match(tag_dir.name).group(1)), skipped)  # type: ignore[union-attr]
        skipped.append(f"checkpoint {tag_dir} skipped: {problem}")
    return Found(None, 0, skipped)


def _tags(ckpt_dir: Path) -> list[Path]:
    """Checkpoint tag folders, newest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and TAG_RE.match(p.name)), reverse=True)


def load(engine: Any, ckpt_dir: Path, tag: str) -> dict[str, Any]:
    """Load a tag `find_latest` accepted into `engine`; returns the client state saved with it."""
    with weights_only(engine):
        load_path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag, load_module_strict=True)
    if load_path is None:
        raise XibError(f"{Path(ckpt_dir) / tag}: DeepSpeed could not load this checkpoint")
    return dict(client or {})


def deepspeed_globals() -> list[Any]:
    """The classes DeepSpeed's ZeRO optimizer state pickles besides tensors (0.19.8, fp32/bf16)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only(engine: Any) -> Iterator[None]:
    """While loading, the engine's checkpoint files are read with torch's weights-only unpickler."""
    import pickle

    import torch
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    checkpoint_engine = engine.checkpoint_engine
    if type(checkpoint_engine) is not TorchCheckpointEngine:  # another engine: the signature is the guard
        yield
        return

    def load(path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(deepspeed_globals()):
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError as err:
                why = next((x for x in str(err).splitlines() if "Unsupported" in x), "not weights only")
                raise XibError(f"{path}: refused by the weights-only loader ({why.strip()})") from None

    checkpoint_engine.load = load
    try:
        yield
    finally:
        del checkpoint_engine.load  # the class's own method again


def prune(ckpt_dir: Path, keep: int, expect: dict[str, Any]) -> None:
    """Rank 0: delete complete checkpoints beyond the newest `keep`, and torn ones older than those."""
    kept = 0
    for tag_dir in _tags(Path(ckpt_dir)):
        try:
            problem = check(tag_dir, expect)
        except signing.Tampered as err:
            problem = str(err)
        if problem is None and kept < max(keep, 1):
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
