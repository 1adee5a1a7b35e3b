"""Ingest real caption data sets, in their released layouts, into manifests + shards.

Formats (`data.ingest.format`; layouts and rules: docs/DATA.md):
  coco       COCO captions JSON: {"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}
  audiocaps  AudioCaps CSVs (audiocap_id?, youtube_id, start_time, caption): one file, or the folder
             holding train.csv, val.csv and test.csv, ingested into one data set, each file's split kept;
             media `data.ingest.audiocaps_pattern` in `<media_dir>/<split>/` or `<media_dir>/`
  cap3d      Cap3D captions CSV without header (uid, caption); point clouds by `cap3d_patterns`
             (the release: objaverse_pc_parallel/<uid>/<uid>_8192.npz, key arr_0); rendered views
             (`cap3d_views`) become image items of the same object where present
  msrvtt     MSR-VTT JSON: {"videos": [{video_id, split?}], "sentences": [{video_id, caption, sen_id?}]}

Every caption becomes one manifest row; the captions of one medium (a COCO image, an AudioCaps clip,
an Objaverse object, an MSR-VTT video) share `entity_id` and one stored medium, and splits are per
group. Safety and integrity, in order: annotation files strictly parsed (xib/data/annotations.py),
captions cleaned (xib/data/text.py), media names resolved under the media folder (xib/data/paths.py),
every medium checked by the shared rules (xib/data/rules.py), converted, and the stored bytes checked
again by `xib validate`'s own row check. Any refusal stops the run before anything is renamed into
place: no manifest, no shard, no report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xib.data import media
from xib.data.annotations import header_index, load_json, read_csv
from xib.data.config import INGEST_FORMATS as FORMATS
from xib.data.config import SPLITS
from xib.data.manifest import MANIFEST_NAME, manifest_path, sha256, write_manifest
from xib.data.paths import read_regular, resolve_media
from xib.data.rules import check_media
from xib.data.shards import ShardWriter
from xib.data.text import clean_caption, quoted
from xib.errors import DataError
from xib.io import atomic_path, write_json

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.data.config import IngestConfig, LimitsConfig
_SOURCE_SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")  # YouTube ids (may start with '-'), Objaverse uids, MSR-VTT ids
_WHOLE_SECONDS = re.compile(r"[0-9]{1,7}")


@dataclass
class SourceRow:
    """One caption of a source annotation file (row: 1-based CSV line or JSON record number)."""

    row: int
    file: str
    item_id: str
    entity_id: str
    caption: str
    candidates: tuple[str, ...]  # media file names under media_dir, first found wins
    modality: str
    source_split: str = ""
    optional: bool = False  # a Cap3D rendered view: used where present, never "missing"
    notes: list[str] = field(default_factory=list)
    media: Path | None = None


@dataclass
class Context:
    """What every reader needs: caption limits and the format's options."""

    limits: LimitsConfig
    icfg: IngestConfig
    max_caption: int

    def caption(self, value: Any, file: Path, row: int) -> tuple[str, list[str]]:
        text, stripped = clean_caption(
            value, str(file), row, self.max_caption, str(self.limits.invisible_chars)
        )
        return text, ([f"caption: {stripped} bidi/zero-width characters stripped"] if stripped else [])


def _id(value: Any, what: str, file: Path, row: int) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not _SAFE_ID.fullmatch(text):
        raise DataError(str(file), f"{what} is letters, digits, '_' or '-'", row=row, detail=quoted(value))
    return text


def _split_of(file: Path) -> str:
    """train/val/test named by an annotation file's stem ('train', 'audiocaps_val', ...), else ''."""
    for token in reversed(re.split(r"[^a-z]+", file.stem.lower())):
        if token in _SOURCE_SPLIT_NAMES:
            return _SOURCE_SPLIT_NAMES[token]
    return ""


# ------------------------------------------------------------------------------------------- readers
def _records(doc: Any, key: str, file: Path) -> list[Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list):
        raise DataError(str(file), f"JSON has a list {key!r}")
    return value


def _field(record: Any, key: str, file: Path, row: int) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise DataError(str(file), f"record has field {key!r}", row=row)
    return record[key]


def read_coco(path: Path, ctx: Context) -> list[SourceRow]:
    doc = load_json(path, ctx.limits)
    files: dict[str, str] = {}
    for i, image in enumerate(_records(doc, "images", path), start=1):
        image_id = _id(_field(image, "id", path, i), "image id", path, i)
        name = _field(image, "file_name", path, i)
        if not isinstance(name, str):
            raise DataError(str(path), "file_name is a string", row=i, detail=quoted(name))
        if image_id in files:
            raise DataError(str(path), "image ids are unique", row=i, detail=image_id)
        files[image_id] = name
    rows = []
    for i, ann in enumerate(_records(doc, "annotations", path), start=1):
        image_id = _id(_field(ann, "image_id", path, i), "image_id", path, i)
        if image_id not in files:
            raise DataError(str(path), "annotation's image_id is listed in 'images'", row=i, detail=image_id)
        ann_id = _id(ann.get("id", i), "annotation id", path, i)
        text, notes = ctx.caption(_field(ann, "caption", path, i), path, i)
        rows.append(
            SourceRow(
                i,
                str(path),
                f"coco-{ann_id}",
                f"coco:{image_id}",
                text,
                (files[image_id],),
                "image",
                notes=notes,
            )
        )
    return rows


def _audiocaps_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = [path / f"{s}.csv" for s in SPLITS if (path / f"{s}.csv").is_file()]
        if not files:
            raise DataError(str(path), "AudioCaps folder holds train.csv, val.csv or test.csv")
        return files
    return [path]


def read_audiocaps(path: Path, ctx: Context) -> list[SourceRow]:
    pattern = str(ctx.icfg.audiocaps_pattern)
    rows: list[SourceRow] = []
    clips: dict[str, tuple[str, Path, int]] = {}  # clip -> (split, file, row): a clip in one split only
    for file in _audiocaps_files(path):
        split = _split_of(file)
        columns, body = header_index(
            read_csv(file, ctx.limits), ("youtube_id", "start_time", "caption"), str(file)
        )
        for line, values in body:
            ytid = _id(values[columns["youtube_id"]], "youtube_id", file, line)
            start = values[columns["start_time"]].strip()
            if not _WHOLE_SECONDS.fullmatch(start):
                raise DataError(
                    str(file), "start_time is a whole number of seconds", row=line, detail=quoted(start)
                )
            start = str(int(start))
            clip = f"{ytid}_{start}"
            seen = clips.setdefault(clip, (split, file, line))
            if seen[0] != split:
                raise DataError(
                    str(file),
                    "a clip (youtube_id + start_time) is in one split only (no split leak)",
                    row=line,
                    detail=f"{clip} is {split or 'unsplit'} here and {seen[0] or 'unsplit'} at {seen[1]} row {seen[2]}",
                )
            item = values[columns["audiocap_id"]].strip() if "audiocap_id" in columns else ""
            item_id = _id(item, "audiocap_id", file, line) if item else f"{split or file.stem}-{line}"
            text, notes = ctx.caption(values[columns["caption"]], file, line)
            try:
                name = pattern.format(youtube_id=ytid, start_time=start)
            except (KeyError, IndexError, ValueError) as err:
                raise DataError(
                    "data.ingest.audiocaps_pattern",
                    "pattern names only {youtube_id} and {start_time}",
                    detail=str(err),
                ) from None
            candidates = (f"{split}/{name}", name) if split else (name,)
            rows.append(
                SourceRow(
                    line,
                    str(file),
                    f"audiocaps-{item_id}",
                    f"audiocaps:{clip}",
                    text,
                    candidates,
                    "audio",
                    split,
                    notes=notes,
                )
            )
    return rows


def read_cap3d(path: Path, ctx: Context) -> list[SourceRow]:
    records = read_csv(path, ctx.limits)
    if records and [v.strip().lower() for v in records[0][1][:2]] == ["uid", "caption"]:
        records = records[1:]  # a header is tolerated, though the release has none
    patterns = [str(p) for p in ctx.icfg.cap3d_patterns]
    views = [int(v) for v in ctx.icfg.cap3d_views]
    rows = []
    for line, values in records:
        if len(values) < 2:
            raise DataError(str(path), "row has uid,caption", row=line)
        if [v.strip().lower() for v in values[:2]] == ["uid", "caption"]:
            raise DataError(str(path), "the header line appears once", row=line, detail="repeated header")
        uid = _id(values[0], "uid", path, line)
        text, notes = ctx.caption(",".join(values[1:]), path, line)
        candidates = tuple(p.format(uid=uid) for p in patterns)
        rows.append(
            SourceRow(line, str(path), f"cap3d-{uid}", f"cap3d:{uid}", text, candidates, "pc", notes=notes)
        )
        for view in views:
            name = str(ctx.icfg.cap3d_view_pattern).format(uid=uid, view=view)
            rows.append(
                SourceRow(
                    line,
                    str(path),
                    f"cap3d-{uid}-view{view}",
                    f"cap3d:{uid}",
                    text,
                    (name,),
                    "image",
                    optional=True,
                    notes=notes,
                )
            )
    return rows


def read_msrvtt(path: Path, ctx: Context) -> list[SourceRow]:
    doc = load_json(path, ctx.limits)
    splits: dict[str, str] = {}
    for i, video in enumerate(_records(doc, "videos", path), start=1):
        video_id = _id(_field(video, "video_id", path, i), "video_id", path, i)
        split = video.get("split", "")
        splits[video_id] = _SOURCE_SPLIT_NAMES.get(str(split).lower(), str(split)) if split else ""
    rows = []
    for i, sent in enumerate(_records(doc, "sentences", path), start=1):
        video_id = _id(_field(sent, "video_id", path, i), "video_id", path, i)
        if video_id not in splits:
            raise DataError(str(path), "sentence's video_id is listed in 'videos'", row=i, detail=video_id)
        text, notes = ctx.caption(_field(sent, "caption", path, i), path, i)
        sen_id = _id(sent.get("sen_id", i), "sen_id", path, i)
        rows.append(
            SourceRow(
                i,
                str(path),
                f"msrvtt-{sen_id}",
                f"msrvtt:{video_id}",
                text,
                (f"{video_id}.mp4",),
                "video",
                splits[video_id],
                notes=notes,
            )
        )
    return rows


READERS: dict[str, Callable[[Path, Context], list[SourceRow]]] = {
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


def assign_split(row: SourceRow, ingest_cfg: IngestConfig) -> str:
    mode = ingest_cfg.split
    if mode == "auto":
        mode = "source" if row.source_split else "hash"
    if mode == "hash":
        return hash_split(row.entity_id, dict(ingest_cfg.splits), ingest_cfg.seed)
    if mode == "source":
        split = _SOURCE_SPLIT_NAMES.get(row.source_split.lower())
        if split is None:
            raise DataError(row.file, "row has a known source split (train/val/validate/test)", row=row.row)
        return split
    if mode in SPLITS:
        return mode
    raise DataError("data.ingest.split", "split is auto, hash, source, train, val or test", detail=mode)


# ------------------------------------------------------------------------------------- media convert
@dataclass
class Converted:
    data: bytes
    ext: str
    meta: dict[str, Any]
    conversion: list[str]


def _convert_image(
    data: bytes, array: np.ndarray, info: dict[str, Any], cfg: IngestConfig, key: str
) -> Converted:
    if not info["converted"]:  # RGB PNG/JPEG, upright: keep the bytes (re-encoding a JPEG loses quality)
        return Converted(data, "jpg" if info["format"] == "jpeg" else "png", _image_meta(array), [])
    return Converted(
        media.encode_image(array), "png", _image_meta(array), [*info["converted"], "stored as PNG"]
    )


def _image_meta(array: np.ndarray) -> dict[str, Any]:
    return {"width": int(array.shape[1]), "height": int(array.shape[0])}


def _convert_audio(
    data: bytes, samples: np.ndarray, info: dict[str, Any], cfg: IngestConfig, key: str
) -> Converted:
    rate = int(info["sample_rate"])
    target = cfg.sample_rate or rate
    done = list(info["converted"])
    if target != rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(target, rate)
        samples = np.clip(resample_poly(samples, target // g, rate // g), -1, 1).astype(np.float32)
        done.append(f"resample {rate} -> {target} Hz")
    if info["format"] != "wav" or info["subtype"] != "PCM_16" or done:
        done.append(f"{info['format'].upper()} {info['subtype']} -> WAV PCM_16")
    # always re-encoded: mono 16-bit PCM with no extra chunks, whatever the source held
    out = media.encode_audio(samples, target)
    return Converted(out, "wav", {"sample_rate": target, "duration_s": len(samples) / target}, done)


def _convert_pc(
    data: bytes, points: np.ndarray, info: dict[str, Any], cfg: IngestConfig, key: str
) -> Converted:
    want = cfg.points
    done = list(info["converted"])
    if want and len(points) != want:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        replace = len(points) < want
        pick = np.random.default_rng(seed).choice(len(points), want, replace=replace)
        points = points[np.sort(pick)]
        done.append(f"sample {info['points']} -> {want} points" + (" (with replacement)" if replace else ""))
    if info["format"] != "npy":
        done.append("NPZ -> NPY")
    return Converted(media.encode_pc(points), "npy", {"points": len(points)}, done)


def _convert_video(
    data: bytes, frames: np.ndarray, info: dict[str, Any], cfg: IngestConfig, key: str
) -> Converted:
    want, size = cfg.video_frames, cfg.video_size
    fps = float(info["fps"])
    done = []
    if want and len(frames) != want:
        frames = frames[np.linspace(0, len(frames) - 1, want).round().astype(int)]
        done.append(f"sample {info['frames']} -> {want} frames")
    if size:
        side = size - size % 2
        if frames.shape[1:3] != (side, side):
            from PIL import Image

            frames = np.stack([np.asarray(Image.fromarray(f).resize((side, side))) for f in frames])
            done.append(f"resize {info['width']}x{info['height']} -> {side}x{side}")
    if done:
        fps = float(cfg.video_fps)
        data = media.encode_video(frames, fps=cfg.video_fps)
        done.append(f"re-encoded at {cfg.video_fps} fps")
    meta = {
        "width": frames.shape[2],
        "height": frames.shape[1],
        "frames": len(frames),
        "duration_s": len(frames) / fps if fps else 0.0,
    }
    return Converted(data, "mp4", meta, done)


CONVERTERS = {"image": _convert_image, "audio": _convert_audio, "pc": _convert_pc, "video": _convert_video}


def _member_key(source: str, media_path: Path, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", media_path.stem)
    key = f"{source}-{stem}"
    if key in used:  # two sources whose names differ only in characters replaced above
        key = f"{key}-{hashlib.sha256(str(media_path).encode()).hexdigest()[:8]}"
    used.add(key)
    return key


def convert_medium(
    modality: str, media_path: Path, row: SourceRow, cfg: XibConfig, key: str
) -> tuple[Converted, dict]:
    """Read, check (shared rules), convert, and check the stored bytes as `xib validate` will."""
    from xib.data.validate import RowError, check_medium

    limits = cfg.data.limits
    where = f"{Path(row.file).name} row {row.row}"
    data = read_regular(media_path, limits.max_media_bytes, row=row.row)
    try:
        array, info = check_media(modality, data, limits, name=str(media_path))
    except DataError as err:
        raise DataError(
            err.file, err.rule, detail=(f"{err.detail}; " if err.detail else "") + where
        ) from None
    converted = CONVERTERS[modality](data, array, info, cfg.data.ingest, key)
    stored = {"checksum": sha256(converted.data), **{c: None for c in ("width", "height", "sample_rate")}}
    stored.update({c: None for c in ("duration_s", "frames", "points")})
    stored.update(converted.meta)
    try:
        same = converted.data is data  # stored unchanged: the rules' result for these bytes is in hand
        decoded = (array, info) if same else None
        check_medium(modality, pd.Series(stored), converted.data, cfg.data.validate, limits, decoded)
    except RowError as err:
        detail = (f"{err.detail} " if err.detail else "") + f"in the stored medium; {where}"
        raise DataError(str(media_path), f"{err.rule} (xib validate's rule)", detail=detail) from None
    source = {k: v for k, v in info.items() if k != "converted"}
    return converted, source


# -------------------------------------------------------------------------------------------- ingest
def _resolve(rows: list[SourceRow], media_dir: Path, on_missing: str) -> tuple[list[SourceRow], int, int]:
    kept: list[SourceRow] = []
    missing = views_absent = 0
    for row in rows:
        row.media = None
        for name in row.candidates:
            row.media = resolve_media(media_dir, name, row.file, row.row)
            if row.media is not None:
                break
        if row.media is None:
            if row.optional:
                views_absent += 1
                continue
            if on_missing == "error":
                raise DataError(
                    row.file, "media file exists", row=row.row, detail=f"{media_dir / row.candidates[0]}"
                )
            missing += 1
            continue
        kept.append(row)
    return kept, missing, views_absent


@contextlib.contextmanager
def _no_new_folders_on_failure(cfg: XibConfig, modalities: set[str]) -> Any:
    """The folders staging creates (data/, world/, world/<m>/) are removed again when the run fails."""
    data = Path(cfg.paths.data)
    folders = [data, data / "world", *(data / "world" / m for m in sorted(modalities))]
    created = [f for f in folders if not f.exists()]
    try:
        yield
    except BaseException:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        raise


def ingest(cfg: XibConfig) -> dict[str, Any]:
    """Convert `cfg.data.ingest` into `data/world/<m>/<split>/` manifests and shards; returns a summary."""
    icfg = cfg.data.ingest
    fmt, path, media_dir = _source(icfg)
    started = time.perf_counter()

    ctx = Context(cfg.data.limits, icfg, cfg.data.validate.max_caption_chars)
    rows = _read_rows(fmt, path, ctx, icfg.limit)
    kept, missing, views_absent = _resolve(rows, media_dir, icfg.on_missing)
    if not kept:
        raise DataError(
            str(path), "at least one row has its media file", detail=f"{missing} missing in {media_dir}"
        )

    by_target: dict[tuple[str, str], list[SourceRow]] = {}
    for row in kept:
        by_target.setdefault((row.modality, assign_split(row, icfg)), []).append(row)
    counts, conversions = _write_targets(cfg, fmt, by_target, len(kept))
    # splits of an ingested modality that this ingest did not produce are stale (another source)
    for modality in counts:
        for split in SPLITS:
            stale = manifest_path(cfg, modality, split).parent
            if split not in counts[modality] and stale.is_dir():
                shutil.rmtree(stale)
    seconds = time.perf_counter() - started
    items = sum(sum(c.values()) for c in counts.values())
    primary = FORMATS[fmt]
    summary = {
        "format": fmt,
        "modality": primary,
        "annotation_file": str(path),
        "media_dir": str(media_dir),
        "rows": len(rows),
        "items": items,
        "missing_media_skipped": missing,
        "views_absent": views_absent,
        "captions_with_invisible_stripped": sum(1 for r in kept if r.notes),
        "entities": len({r.entity_id for r in kept}),
        "splits": counts.get(primary, {}),
        "modalities": counts,
        "conversions": dict(sorted(conversions.items())),
        "seconds": round(seconds, 3),
        "items_per_s": round(items / seconds, 1) if seconds else None,
    }
    write_json(Path(cfg.paths.data) / "reports" / f"ingest_{primary}.json", summary)
    return summary


def _source(icfg: IngestConfig) -> tuple[str, Path, Path]:
    """(format, annotation file or folder, media folder), each checked before anything is read."""
    fmt = icfg.format
    if fmt not in FORMATS:
        raise DataError("data.ingest.format", f"format is one of {sorted(FORMATS)}", detail=repr(fmt))
    if icfg.on_missing not in ("skip", "error"):
        raise DataError("data.ingest.on_missing", "on_missing is skip or error", detail=icfg.on_missing)
    path = Path(icfg.path)
    if not icfg.path or not (path.is_file() or (fmt == "audiocaps" and path.is_dir())):
        raise DataError(str(path), "annotation file exists (data.ingest.path)")
    media_dir = Path(icfg.media_dir) if icfg.media_dir else (path if path.is_dir() else path.parent)
    if not media_dir.is_dir():
        raise DataError(str(media_dir), "media folder exists (data.ingest.media_dir)")
    return fmt, path, media_dir


def _read_rows(fmt: str, path: Path, ctx: Context, limit: int) -> list[SourceRow]:
    """The annotation file's rows (the first `limit` when > 0); an id seen twice is refused."""
    rows = READERS[fmt](path, ctx)
    if limit > 0:
        rows = rows[:limit]
    seen: dict[str, SourceRow] = {}
    for row in rows:
        first = seen.setdefault(row.item_id, row)
        if first is not row:
            raise DataError(
                row.file,
                "annotation ids are unique",
                row=row.row,
                detail=f"{row.item_id} also at {first.file} row {first.row}",
            )
    return rows


def _write_targets(
    cfg: XibConfig, fmt: str, by_target: dict[tuple[str, str], list[SourceRow]], total: int
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Convert and write every (modality, split) into staged folders, renamed into place only when all
    succeed; returns (items per modality and split, conversion steps counted by kind)."""
    from tqdm import tqdm

    counts: dict[str, dict[str, int]] = {}
    conversions: dict[str, int] = {}
    with _no_new_folders_on_failure(cfg, {m for m, _ in by_target}), contextlib.ExitStack() as stack:
        staged = {
            target: stack.enter_context(atomic_path(manifest_path(cfg, *target).parent))
            for target in by_target
        }
        progress = tqdm(total=total, desc=f"ingest {fmt}", unit="item", leave=False, disable=None)
        for (modality, split), split_rows in by_target.items():
            records = _write_split(
                cfg, fmt, modality, split, split_rows, staged[(modality, split)], conversions, progress
            )
            write_manifest(pd.DataFrame.from_records(records), staged[(modality, split)] / MANIFEST_NAME)
            counts.setdefault(modality, {})[split] = len(records)
        progress.close()
    return counts, conversions


def _write_split(
    cfg: XibConfig,
    fmt: str,
    modality: str,
    split: str,
    split_rows: list[SourceRow],
    folder: Path,
    conversions: dict[str, int],
    progress: Any,
) -> list[dict[str, Any]]:
    """One (modality, split): each medium converted and sharded once, one manifest record per caption."""
    groups: dict[Path, list[SourceRow]] = {}
    for row in split_rows:
        groups.setdefault(row.media, []).append(row)  # type: ignore[arg-type]
    records = []
    used: set[str] = set()
    with ShardWriter(folder, max_items=cfg.data.ingest.shard_items) as writer:
        for media_path, group in groups.items():
            key = _member_key(fmt, media_path, used)
            converted, source = convert_medium(modality, media_path, group[0], cfg, key)
            uri = writer.write(f"{key}.{converted.ext}", converted.data)
            checksum = sha256(converted.data)
            for step in converted.conversion:
                kind = step.split(" ")[0]
                conversions[f"{modality} {kind}"] = conversions.get(f"{modality} {kind}", 0) + 1
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
                        "conversion": "; ".join([*converted.conversion, *row.notes]),
                        "source_meta": json.dumps(source, sort_keys=True),
                    }
                )
            progress.update(len(group))
    return records
