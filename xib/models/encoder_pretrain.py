"""Brief supervised pre-training of the demo encoders on the world, then frozen.

Random frozen encoders cannot tell the world's entities apart well enough for the projections to
learn captions (DESIGN.md: captioning capped at 0.33, DisCRn at 0.57-0.75). So `xib bootstrap`
trains each demo encoder for a few hundred steps to classify the kind of the train-split items
(a linear head on the mean of its tokens), drops the head, and saves the encoder in its real format
to `<encoder_pretrain.output_dir>/<modality>/`. Video reuses the image encoder, frame by frame.

The effect is measured on the held-out split (entities never seen in training) by a linear probe
and a nearest-centroid classifier on the frozen, mean-pooled features: random init vs pre-trained.

    python -m xib.models.encoder_pretrain [hydra overrides]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from xib.config import for_modality, to_dict
from xib.errors import DataError, XibError
from xib.models.encoders import EncoderOutput, FrozenEncoder, build_encoder, encoder_config
from xib.schedule import lr_factor

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.models.config import EncoderConfig, EncoderPretrainConfig

META_NAME = "xib_pretrain.json"
REPORT_NAME = "report.json"
# Modalities whose encoder is another modality's pre-trained encoder.
SHARED_ENCODER = {"video": "image"}


@dataclass
class LabelledMedia:
    items: list[np.ndarray]
    labels: list[str]
    source: str  # the manifest they came from (for error messages and provenance)
    checksum: str  # sha256 of that manifest file


# ---------------------------------------------------------------------------------------------- data
def load_world_split(
    cfg: XibConfig, modality: str, split: str, target: str, max_items: int = 0, seed: int = 0
) -> LabelledMedia:
    """Decoded media and their `target` labels from `data/world/<modality>/<split>`."""
    from tqdm import tqdm

    from xib.data.manifest import manifest_path, read_manifest
    from xib.data.media import MediaError, decode, decode_audio
    from xib.data.shards import iter_items

    path = manifest_path(cfg, modality, split)
    df = read_manifest(path)
    if target not in df.columns:
        raise DataError(str(path), f"manifest has the pre-training target column {target!r}")
    if max_items and len(df) > max_items:
        df = df.sample(n=max_items, random_state=seed).sort_index()
    sample_rate = int(cfg.model.encoders[modality].sample_rate) if modality == "audio" else 0
    items, labels = [], []
    rows = tqdm(
        iter_items(df, path.parent), total=len(df), desc=f"read {modality}/{split}", leave=False, disable=None
    )
    for row, data in rows:
        label = str(row[target]) if row[target] is not None else ""
        if not label:
            raise DataError(
                str(path), f"{target} is not empty (pre-training needs a label)", row=int(row.name)
            )
        try:
            if modality == "audio":
                array, rate = decode_audio(data)
                if rate != sample_rate:
                    raise MediaError(f"sample rate {rate} Hz; the encoder expects {sample_rate} Hz")
            else:
                array = decode(modality, data)
        except MediaError as err:
            raise DataError(str(path), "medium decodes", row=int(row.name), detail=str(err)) from None
        items.append(array)
        labels.append(label)
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    return LabelledMedia(items, labels, str(path), checksum)


def with_frames_of(train: LabelledMedia, clips: LabelledMedia) -> LabelledMedia:
    """`train` plus every frame of `clips` (uint8 [T, H, W, 3]) as an image with its clip's label."""
    items, labels = list(train.items), list(train.labels)
    for clip, label in zip(clips.items, clips.labels, strict=True):
        items.extend(list(clip))
        labels.extend([label] * len(clip))
    checksum = hashlib.sha256((train.checksum + clips.checksum).encode()).hexdigest()
    return LabelledMedia(items, labels, f"{train.source} + frames of {clips.source}", checksum)


def preprocess_all(encoder: FrozenEncoder, items: list[np.ndarray], chunk: int = 256) -> torch.Tensor:
    return torch.cat([encoder.preprocess(items[i : i + chunk]) for i in range(0, len(items), chunk)])


def pooled(output: EncoderOutput) -> torch.Tensor:
    """Masked mean over views and tokens: [B, V, N, D] -> [B, D]."""
    weight = output.mask.unsqueeze(-1).to(output.features.dtype)
    return (output.features * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1.0)


@torch.no_grad()
def pooled_features(encoder: FrozenEncoder, inputs: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    return torch.cat([pooled(encoder(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])


# ---------------------------------------------------------------------------------------------- training
def train_encoder(
    encoder: FrozenEncoder,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    pcfg: EncoderPretrainConfig,
    steps: int,
    desc: str = "pretrain",
) -> list[float]:
    """Train the encoder with a linear head on its pooled tokens (cross-entropy); return the losses.

    The head is thrown away; the encoder comes back frozen.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(pcfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(pcfg.seed)
        head = nn.Linear(encoder.hidden_size, num_classes)
    encoder.unfreeze()
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=pcfg.lr, weight_decay=pcfg.weight_decay)
    warmup = pcfg.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, steps))
    batch = min(pcfg.batch_size, len(inputs))
    losses: list[float] = []
    try:
        bar = tqdm(range(steps), desc=desc, leave=False, disable=None)
        for _ in bar:
            index = torch.randperm(len(inputs), generator=generator)[:batch]
            logits = head(pooled(encoder(inputs[index])))
            loss = nn.functional.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        encoder.freeze()
    return losses


# ---------------------------------------------------------------------------------------------- probing
def probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    steps: int,
    lr: float,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out accuracy of a linear probe and of a nearest-centroid classifier on frozen features.

    Labels < 0 (a test class never seen in training) count as errors.
    """
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-3)
    with torch.enable_grad():
        for _ in range(steps):
            loss = nn.functional.cross_entropy(probe(train_x), train_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        linear = (probe(test_x).argmax(-1) == test_y).float().mean().item()
        centroids = torch.stack(
            [
                train_x[train_y == c].mean(0)
                if (train_y == c).any()
                else torch.full_like(train_x[0], float("inf"))
                for c in range(num_classes)
            ]
        )
        nearest = torch.cdist(test_x, centroids).argmin(-1)
        centroid = (nearest == test_y).float().mean().item()
    return {"linear_probe": round(linear, 4), "nearest_centroid": round(centroid, 4)}


def measure(
    encoder: FrozenEncoder,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    pcfg: EncoderPretrainConfig,
) -> dict[str, float]:
    train_x, test_x = pooled_features(encoder, train[0]), pooled_features(encoder, test[0])
    return probe_accuracy(
        train_x,
        train[1],
        test_x,
        test[1],
        num_classes,
        pcfg.probe_steps,
        pcfg.probe_lr,
        pcfg.seed,
    )


def label_ids(labels: list[str], classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index.get(label, -1) for label in labels], dtype=torch.long)


# ---------------------------------------------------------------------------------------------- the stage
def _run_key(pcfg: EncoderPretrainConfig, steps: int, enc_cfg: EncoderConfig, checksum: str) -> str:
    plain_enc = dataclasses.asdict(encoder_config(enc_cfg))
    plain_enc.pop("path")
    plain_p = to_dict(pcfg)
    for key in ("output_dir", "eval_modalities", "eval_max_items", "threads", "steps_by_modality"):
        plain_p.pop(key, None)
    plain_p["steps"] = steps  # this encoder's own steps: another modality's do not retrain it
    blob = json.dumps({"pretrain": plain_p, "encoder": plain_enc, "data": checksum}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def pretrain_encoders(cfg: XibConfig, force: bool = False) -> dict[str, Any]:
    """Pre-train, save and measure every encoder in `model.encoder_pretrain`; return the report.

    An encoder whose saved run key (config + train manifest checksum) matches is not retrained.
    Writes `<output_dir>/<m>/` (config.json + model.safetensors + xib_pretrain.json) and
    `<output_dir>/report.json`, each atomically.
    """
    from xib.io import write_json
    from xib.transient import apply_budgets

    apply_budgets(cfg.infra.retry)  # media may come from S3

    pcfg = cfg.model.encoder_pretrain
    out_dir = Path(pcfg.output_dir)
    encoders = cfg.model.encoders
    for m in list(pcfg.modalities) + list(pcfg.eval_modalities):
        if m not in encoders:
            raise XibError(f"encoder_pretrain names {m!r}, which has no entry in model.encoders")
    threads = torch.get_num_threads()
    torch.set_num_threads(pcfg.threads)
    report: dict[str, Any] = {"target": pcfg.target, "modalities": {}}
    try:
        classes_by: dict[str, list[str]] = {}
        for m in pcfg.modalities:
            started = time.time()
            train = load_world_split(cfg, m, "train", pcfg.target, pcfg.max_items, pcfg.seed)
            for source in pcfg.frames_from.get(m, []):
                train = with_frames_of(train, load_world_split(cfg, source, "train", pcfg.target, 0, 0))
            classes = sorted(set(train.labels))
            classes_by[m] = classes
            target_dir = out_dir / m
            steps = int(for_modality(pcfg, "steps", m))
            key = _run_key(pcfg, steps, encoders[m], train.checksum)
            meta_file = target_dir / META_NAME
            if not force and meta_file.is_file() and json.loads(meta_file.read_text()).get("key") == key:
                print(f"encoder {m}: up to date ({target_dir})", file=sys.stderr)
                continue
            enc_cfg = dataclasses.replace(encoder_config(encoders[m]), path="")
            encoder = build_encoder(m, enc_cfg)
            inputs = preprocess_all(encoder, train.items)
            losses = train_encoder(
                encoder, inputs, label_ids(train.labels, classes), len(classes), pcfg, steps, f"pretrain {m}"
            )
            encoder.save(target_dir)
            meta = {
                "key": key,
                "modality": m,
                "classes": classes,
                "train_items": len(train.items),
                "train_manifest": train.source,
                "steps": steps,
                "loss_first": round(losses[0], 4) if losses else None,
                "loss_last": round(float(np.mean(losses[-10:])), 4) if losses else None,
                "seconds": round(time.time() - started, 1),
                "fingerprint": build_encoder(
                    m, dataclasses.replace(enc_cfg, path=str(target_dir))
                ).fingerprint(),
            }
            write_json(meta_file, meta)
            print(
                f"encoder {m}: {len(train.items)} items, loss {meta['loss_first']} -> {meta['loss_last']}, "
                f"{meta['seconds']} s -> {target_dir}",
                file=sys.stderr,
            )
        for m in pcfg.eval_modalities:
            report["modalities"][m] = measure_modality(cfg, m, out_dir)
        write_json(out_dir / REPORT_NAME, report)
    finally:
        torch.set_num_threads(threads)
    return report


def measure_modality(cfg: XibConfig, modality: str, out_dir: Path) -> dict[str, Any]:
    """Held-out kind accuracy of the random-init and the pre-trained encoder of `modality`."""
    pcfg = cfg.model.encoder_pretrain
    source = SHARED_ENCODER.get(modality, modality)
    trained_dir = out_dir / source
    if not (trained_dir / "config.json").is_file():
        raise XibError(f"{trained_dir}: no pre-trained {source} encoder to measure {modality} with")
    limit = pcfg.eval_max_items
    train = load_world_split(cfg, modality, "train", pcfg.target, limit, pcfg.seed)
    test = load_world_split(cfg, modality, pcfg.eval_split, pcfg.target, limit, pcfg.seed)
    classes = sorted(set(train.labels))
    base = encoder_config(cfg.model.encoders[modality])
    result: dict[str, Any] = {
        "encoder": source,
        "train_items": len(train.items),
        "test_items": len(test.items),
    }
    inputs = None
    for name, path in (("random", ""), ("pretrained", str(trained_dir))):
        encoder = build_encoder(modality, dataclasses.replace(base, path=path))
        if inputs is None:  # preprocessing does not depend on the weights
            inputs = (preprocess_all(encoder, train.items), preprocess_all(encoder, test.items))
        ytrain, ytest = label_ids(train.labels, classes), label_ids(test.labels, classes)
        result[name] = measure(encoder, (inputs[0], ytrain), (inputs[1], ytest), len(classes), pcfg)
    print(
        f"{modality}: held-out kind accuracy random {result['random']} -> pretrained {result['pretrained']}",
        file=sys.stderr,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from xib.config import load_config

    args = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in args
    cfg = load_config([a for a in args if a != "--force"])
    report = pretrain_encoders(cfg, force=force)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
