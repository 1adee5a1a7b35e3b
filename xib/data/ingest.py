"""Ingest real caption data sets into manifests + shards, in the same layout the synthetic world uses.

Formats (`data.ingest.format`):
  coco       COCO captions JSON: {"images": [{id, file_name, ...}], "annotations": [{id, image_id, caption}]}
  audiocaps  AudioCaps CSV: audiocap_id?, youtube_id, start_time, caption; WAV files in media_dir named
             `<youtube_id>_<start>.wav`, `<youtube_id>.wav` or `Y<youtube_id>.wav`
  cap3d      Cap3D CSV (header optional): uid, caption; `<uid>.npy` or `<uid>.npz` in media_dir
  msrvtt     MSR-VTT JSON: {"videos": [{video_id, split?}], "sentences": [{video_id, caption, sen_id?}]};
             `<video_id>.mp4` in media_dir

Every caption becomes one manifest row; rows of one source group (a COCO image, a YouTube clip, an
Objaverse object, an MSR-VTT video) share `entity_id`, and splits are assigned per group, so no group
spans two splits. Media are checked, converted to the configured rate/points/frames where asked, and
packed into tar shards beside each split's manifest. All splits are staged and renamed together.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xib.data import media
from xib.data.manifest import MANIFEST_NAME, manifest_path, sha256, write_manifest
from xib.data.shards import ShardWriter
from xib.errors import DataError
from xib.io import atomic_path, write_json

from xib.data.config import INGEST_FORMATS as FORMATS
from xib.data.config import SPLITS
_SOURCE_SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}


@dataclass
class SourceRow:
    """One caption of the source annotation file (row: its 0-based position there)."""

    row: int
    item_id: str
    entity_id: str
    caption: str
    candidates: tuple[str, ...]  # media file names to look for, first found wins
    source_split: str = ""
    media: Path | None = None


# ------------------------------------------------------------------------------------------- readers
def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(str(path), "annotation file is valid UTF-8 JSON", detail=str(err)) from None


def _caption(value: Any, file: Path, row: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(str(file), "caption is a non-empty string", row=row)
    return " ".join(value.split())


def _field(record: Any, key: str, file: Path, row: int) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise DataError(str(file), f"record has field {key!r}", row=row)
    return record[key]


def read_coco(path: Path) -> list[SourceRow]:
    doc = _load_json(path)
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise DataError(str(path), "COCO captions JSON has 'images' and 'annotations'")
    files = {}
    for i, image in enumerate(doc["images"]):
        files[str(_field(image, "id", path, i))] = str(_field(image, "file_name", path, i))
    rows = []
    for i, ann in enumerate(doc["annotations"]):
        image_id = str(_field(ann, "image_id", path, i))
        if image_id not in files:
            raise DataError(str(path), "annotation's image_id is listed in 'images'", row=i, detail=image_id)
        ann_id = str(ann.get("id", i))
        caption = _caption(_field(ann, "caption", path, i), path, i)
        rows.append(SourceRow(i, f"coco-{ann_id}", f"coco:{image_id}", caption, (files[image_id],)))
    return rows


def _read_csv(path: Path, header_key: str) -> tuple[list[dict[str, str]] | list[list[str]], bool]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(str(path), "annotation file is valid UTF-8", detail=str(err)) from None
    records = list(csv.reader(text.splitlines()))
    has_header = bool(records) and header_key in [c.strip() for c in records[0]]
    return records, has_header


def _start_names(ytid: str, start: str) -> tuple[str, ...]:
    names = [f"{ytid}_{start}.wav"]
    with contextlib.suppress(ValueError):
        value = float(start)
        names += [f"{ytid}_{int(value)}.wav", f"{ytid}_{value:.1f}.wav", f"{ytid}_{int(value * 1000)}.wav"]
    names += [f"{ytid}.wav", f"Y{ytid}.wav", f"Y{ytid}_{start}.wav"]
    return tuple(dict.fromkeys(names))


def read_audiocaps(path: Path) -> list[SourceRow]:
    records, has_header = _read_csv(path, "youtube_id")
    if not has_header:
        raise DataError(str(path), "AudioCaps CSV has a header with youtube_id,start_time,caption")
    header = [c.strip() for c in records[0]]
    missing = [c for c in ("youtube_id", "start_time", "caption") if c not in header]
    if missing:
        raise DataError(
            str(path), "AudioCaps CSV has columns youtube_id,start_time,caption", detail=f"missing {missing}"
        )
    rows = []
    for i, values in enumerate(records[1:]):
        if len(values) != len(header):
            raise DataError(str(path), f"row has {len(header)} fields", row=i, detail=f"got {len(values)}")
        rec = dict(zip(header, values))
        ytid, start = rec["youtube_id"].strip(), rec["start_time"].strip()
        if not ytid:
            raise DataError(str(path), "youtube_id is not empty", row=i)
        item = rec.get("audiocap_id", "").strip() or str(i)
        caption = _caption(rec["caption"], path, i)
        rows.append(
            SourceRow(i, f"audiocaps-{item}", f"audiocaps:{ytid}", caption, _start_names(ytid, start))
        )
    return rows


def read_cap3d(path: Path) -> list[SourceRow]:
    records, has_header = _read_csv(path, "uid")
    body = records[1:] if has_header else records
    rows = []
    for i, values in enumerate(body):
        if len(values) < 2:
            raise DataError(str(path), "row has uid,caption", row=i)
        uid = values[0].strip()
        if not uid:
            raise DataError(str(path), "uid is not empty", row=i)
        caption = _caption(",".join(values[1:]), path, i)
        rows.append(SourceRow(i, f"cap3d-{uid}", f"cap3d:{uid}", caption, (f"{uid}.npy", f"{uid}.npz")))
    return rows


def read_msrvtt(path: Path) -> list[SourceRow]:
    doc = _load_json(path)
    if not isinstance(doc, dict) or "videos" not in doc or "sentences" not in doc:
        raise DataError(str(path), "MSR-VTT JSON has 'videos' and 'sentences'")
    splits = {}
    for i, video in enumerate(doc["videos"]):
        splits[str(_field(video, "video_id", path, i))] = str(video.get("split", ""))
    rows = []
    for i, sent in enumerate(doc["sentences"]):
        video_id = str(_field(sent, "video_id", path, i))
        if video_id not in splits:
            raise DataError(str(path), "sentence's video_id is listed in 'videos'", row=i, detail=video_id)
        caption = _caption(_field(sent, "caption", path, i), path, i)
        sen_id = str(sent.get("sen_id", i))
        rows.append(
            SourceRow(
                i, f"msrvtt-{sen_id}", f"msrvtt:{video_id}", caption, (f"{video_id}.mp4",), splits[video_id]
            )
        )
    return rows


READERS: dict[str, Callable[[Path], list[SourceRow]]] = {
    "coco": read_coco,
    "audiocaps": read_audiocaps,
    "cap3d": read_cap3d,
    "msrvtt": read_msrvtt,
}


# ------------------------------------------------------------------------------------------- splits
def hash_split(entity_id: str, fractions: dict[str, float], seed: int) -> str:
    """A stable split for a source group: sha256(seed, entity) mapped onto the cumulative fractions."""
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise DataError("data.ingest.splits", "split fractions are non-negative and sum above 0")
    digest = hashlib.sha256(f"{seed}:{entity_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac / total
        if u < acc:
            return name
    return list(fractions)[-1]


def assign_split(row: SourceRow, ingest_cfg: Any, file: Path) -> str:
    mode = str(ingest_cfg.split)
    if mode == "hash":
        return hash_split(row.entity_id, dict(ingest_cfg.splits), int(ingest_cfg.seed))
    if mode == "source":
        split = _SOURCE_SPLIT_NAMES.get(row.source_split.lower())
        if split is None:
            raise DataError(str(file), "row has a known source split (train/val/validate/test)", row=row.row)
        return split
    if mode in SPLITS:
        return mode
    raise DataError("data.ingest.split", "split is hash, source, train, val or test", detail=mode)


# ------------------------------------------------------------------------------------- media convert
@dataclass
class Converted:
    data: bytes
    ext: str
    meta: dict[str, Any]


def _convert_image(data: bytes, cfg: Any, key: str, suffix: str) -> Converted:
    image = media.decode_image(data, convert=False)
    if image.ndim == 3 and image.shape[2] == 3 and suffix in ("png", "jpg", "jpeg"):
        out, ext = data, suffix  # keep the original bytes: re-encoding a JPEG loses quality
    else:
        image = media.decode_image(data)  # grey / RGBA / palette -> RGB
        out, ext = media.encode_image(image), "png"
    return Converted(out, ext, {"width": image.shape[1], "height": image.shape[0]})


def _convert_audio(data: bytes, cfg: Any, key: str, suffix: str) -> Converted:
    samples, rate = media.decode_audio(data)
    target = int(cfg.sample_rate) or rate
    changed = target != rate
    if changed:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(target, rate)
        samples = np.clip(resample_poly(samples, target // g, rate // g), -1, 1).astype(np.float32)
    if not np.all(np.isfinite(samples)):
        raise media.MediaError("audio contains NaN or inf")
    # always re-encode: mono 16-bit PCM with no extra chunks, whatever the source WAV held
    out = media.encode_audio(samples, target)
    return Converted(out, "wav", {"sample_rate": target, "duration_s": len(samples) / target})


def _convert_pc(data: bytes, cfg: Any, key: str, suffix: str) -> Converted:
    points = media.decode_pc(data)[:, :3]
    if not np.all(np.isfinite(points)):
        raise media.MediaError("point cloud contains NaN or inf")
    if len(points) == 0:
        raise media.MediaError("point cloud has no points")
    want = int(cfg.points)
    if want and len(points) != want:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        pick = np.random.default_rng(seed).choice(len(points), want, replace=len(points) < want)
        points = points[np.sort(pick)]
    return Converted(media.encode_pc(points), "npy", {"points": len(points)})


def _convert_video(data: bytes, cfg: Any, key: str, suffix: str) -> Converted:
    frames, fps = media.decode_video_meta(data)
    want, size = int(cfg.video_frames), int(cfg.video_size)
    changed = False
    if want and len(frames) != want:
        frames = frames[np.linspace(0, len(frames) - 1, want).round().astype(int)]
        changed = True
    if size:
        side = size - size % 2
        if frames.shape[1:3] != (side, side):
            from PIL import Image

            frames = np.stack([np.asarray(Image.fromarray(f).resize((side, side))) for f in frames])
            changed = True
    if changed:
        fps = float(cfg.video_fps)
        data = media.encode_video(frames, fps=int(cfg.video_fps))
    duration = len(frames) / fps if fps else 0.0
    meta = {
        "width": frames.shape[2],
        "height": frames.shape[1],
        "frames": len(frames),
        "duration_s": duration,
    }
    return Converted(data, "mp4", meta)


CONVERTERS = {"image": _convert_image, "audio": _convert_audio, "pc": _convert_pc, "video": _convert_video}


# -------------------------------------------------------------------------------------------- ingest
def _member_key(source: str, media_path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", media_path.stem)
    return f"{source}-{stem}"


def ingest(cfg: Any) -> dict[str, Any]:
    """Convert `cfg.data.ingest` into `data/world/<m>/<split>/` manifests and shards; returns a summary."""
    from tqdm import tqdm

    icfg = cfg.data.ingest
    fmt = str(icfg.format)
    if fmt not in FORMATS:
        raise DataError("data.ingest.format", f"format is one of {sorted(FORMATS)}", detail=repr(fmt))
    if str(icfg.on_missing) not in ("skip", "error"):
        raise DataError("data.ingest.on_missing", "on_missing is skip or error", detail=str(icfg.on_missing))
    path = Path(str(icfg.path))
    if not str(icfg.path) or not path.is_file():
        raise DataError(str(path), "annotation file exists (data.ingest.path)")
    media_dir = Path(str(icfg.media_dir)) if str(icfg.media_dir) else path.parent
    if not media_dir.is_dir():
        raise DataError(str(media_dir), "media folder exists (data.ingest.media_dir)")
    modality = FORMATS[fmt]
    started = time.perf_counter()

    rows = READERS[fmt](path)
    if int(icfg.limit) > 0:
        rows = rows[: int(icfg.limit)]
    seen: dict[str, int] = {}
    for row in rows:
        if row.item_id in seen:
            raise DataError(
                str(path),
                "annotation ids are unique",
                row=row.row,
                detail=f"{row.item_id} also at row {seen[row.item_id]}",
            )
        seen[row.item_id] = row.row

    kept: list[SourceRow] = []
    missing = 0
    for row in rows:
        row.media = next((media_dir / n for n in row.candidates if (media_dir / n).is_file()), None)
        if row.media is None:
            if icfg.on_missing == "error":
                raise DataError(
                    str(path), "media file exists", row=row.row, detail=f"{media_dir / row.candidates[0]}"
                )
            missing += 1
            continue
        kept.append(row)
    if not kept:
        raise DataError(
            str(path), "at least one row has its media file", detail=f"{missing} missing in {media_dir}"
        )

    by_split: dict[str, list[SourceRow]] = {}
    for row in kept:
        by_split.setdefault(assign_split(row, icfg, path), []).append(row)

    convert = CONVERTERS[modality]
    counts: dict[str, int] = {}
    targets = {split: manifest_path(cfg, modality, split).parent for split in by_split}
    with contextlib.ExitStack() as stack:
        staged = {split: stack.enter_context(atomic_path(targets[split])) for split in by_split}
        progress = tqdm(total=len(kept), desc=f"ingest {fmt}", unit="item", leave=False, disable=None)
        for split, split_rows in by_split.items():
            groups: dict[Path, list[SourceRow]] = {}
            for row in split_rows:
                groups.setdefault(row.media, []).append(row)  # type: ignore[arg-type]
            records = []
            with ShardWriter(staged[split], max_items=int(icfg.shard_items)) as writer:
                for media_path, group in groups.items():
                    key = _member_key(fmt, media_path)
                    try:
                        converted = convert(
                            media_path.read_bytes(), icfg, key, media_path.suffix.lower().lstrip(".")
                        )
                    except (media.MediaError, ValueError) as err:
                        raise DataError(
                            str(media_path), f"{modality} media decodes", row=group[0].row, detail=str(err)
                        ) from None
                    uri = writer.write(f"{key}.{converted.ext}", converted.data)
                    checksum = sha256(converted.data)
                    for row in group:
                        records.append(
                            {
                                "id": row.item_id,
                                "entity_id": row.entity_id,
                                "kind": "",
                                "modality": modality,
                                "uri": uri,
                                "caption": row.caption,
                                "split": split,
                                "source": fmt,
                                "checksum": checksum,
                                **converted.meta,
                            }
                        )
                    progress.update(len(group))
            write_manifest(pd.DataFrame.from_records(records), staged[split] / MANIFEST_NAME)
            counts[split] = len(records)
        progress.close()
    # splits of this modality that this ingest did not produce are stale (another source): remove them
    for split in SPLITS:
        stale = manifest_path(cfg, modality, split).parent
        if split not in by_split and stale.is_dir():
            shutil.rmtree(stale)
    seconds = time.perf_counter() - started
    summary = {
        "format": fmt,
        "modality": modality,
        "annotation_file": str(path),
        "media_dir": str(media_dir),
        "rows": len(rows),
        "items": sum(counts.values()),
        "missing_media_skipped": missing,
        "entities": len({r.entity_id for r in kept}),
        "splits": counts,
        "seconds": round(seconds, 3),
        "items_per_s": round(sum(counts.values()) / seconds, 1) if seconds else None,
    }
    write_json(Path(cfg.paths.data) / "reports" / f"ingest_{modality}.json", summary)
    return summary
