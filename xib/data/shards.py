"""Media storage: WebDataset-style tar shards, local files and S3 objects behind one reader.

A manifest `uri` is one of
  `shard-000000.tar#image-000123.png`  a member of a tar shard in the manifest's folder,
  `clips/a.wav` or `/abs/a.wav`         a local file (relative to the manifest's folder),
  `s3://bucket/key` (optionally `#member` when the object is a tar shard).
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from xib.errors import DataError

SHARD_PATTERN = "shard-{index:06d}.tar"


class ShardWriter:
    """Write (name, bytes) members into `shard-000000.tar`, `shard-000001.tar`, ... in `directory`.

    Each shard is written under a temporary name and renamed when full or on close; if the `with`
    block fails, every shard this writer made is removed. Members are WebDataset-style `<key>.<ext>`
    with fixed metadata (mtime 0, mode 644) so identical media give identical shards.
    """

    def __init__(self, directory: str | os.PathLike[str], max_items: int = 1000) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.directory = Path(directory)
        self.max_items = int(max_items)
        self.shards: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = 0
        self._names: set[str] = set()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def current_name(self) -> str:
        return SHARD_PATTERN.format(index=len(self.shards))

    def write(self, name: str, data: bytes) -> str:
        """Add one member; returns its uri `shard-NNNNNN.tar#name`."""
        if "/" in name or "#" in name or not name:
            raise ValueError(f"bad shard member name {name!r}")
        if name in self._names:
            raise ValueError(f"duplicate shard member name {name!r}")
        if self._tar is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._tmp = self.directory / f".{self.current_name}.tmp-{os.getpid()}"
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self._tar.addfile(info, io.BytesIO(data))
        self._names.add(name)
        uri = f"{self.current_name}#{name}"
        self._count += 1
        if self._count >= self.max_items:
            self._finish_shard()
        return uri

    def _finish_shard(self) -> None:
        if self._tar is None or self._tmp is None:
            return
        self._tar.close()
        target = self.directory / self.current_name
        os.replace(self._tmp, target)
        self.shards.append(target)
        self._tar, self._tmp, self._count = None, None, 0

    def close(self) -> list[Path]:
        self._finish_shard()
        return self.shards

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        for shard in self.shards:
            shard.unlink(missing_ok=True)
        self._tar, self._tmp, self._count, self.shards = None, None, 0, []


# ------------------------------------------------------------------------------------------- reading
def split_uri(uri: str) -> tuple[str, str | None]:
    """`shard.tar#member` -> (`shard.tar`, `member`); other uris -> (uri, None)."""
    if "#" in uri:
        container, member = uri.split("#", 1)
        return container, member
    return uri, None


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint_url: str) -> Any:
    import boto3

    from xib.transient import s3_client_config

    # an explicit endpoint (cfg.infra.s3_endpoint_url) wins; else boto3 honours AWS_ENDPOINT_URL itself
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=s3_client_config())


def _read_s3(uri: str, endpoint_url: str | None) -> bytes:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise DataError(uri, "s3 uri is s3://bucket/key")
    client = _s3_client(endpoint_url or os.environ.get("AWS_ENDPOINT_URL", ""))
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as err:  # botocore raises many types; all mean "not readable"
        raise DataError(uri, "media object exists in S3", detail=type(err).__name__) from None


@functools.lru_cache(maxsize=16)
def _tar_index(path: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """member name -> (data offset, size); cached per shard version (path, mtime, size)."""
    with tarfile.open(path, "r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def _local(container: str, base_dir: str | os.PathLike[str] | None) -> Path:
    path = Path(container)
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def read_media_bytes(
    uri: str, base_dir: str | os.PathLike[str] | None = None, s3_endpoint_url: str | None = None
) -> bytes:
    """The bytes of one medium: a shard member, a local file (relative to `base_dir`), or S3."""
    container, member = split_uri(uri)
    if container.startswith("s3://"):
        data = _read_s3(container, s3_endpoint_url)
        if member is None:
            return data
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                handle = tar.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                return handle.read()
        except (KeyError, tarfile.TarError):
            raise DataError(uri, "shard member exists") from None
    path = _local(container, base_dir)
    try:
        stat = path.stat()
    except OSError:
        raise DataError(str(path), "media file exists") from None
    if member is None:  # a plain file: only a regular one is opened (a FIFO named in a manifest would block)
        from xib.data.paths import read_regular

        return read_regular(path, 2**40)
    try:
        index = _tar_index(str(path), stat.st_mtime_ns, stat.st_size)
    except tarfile.TarError as err:
        raise DataError(str(path), "shard is a readable tar file", detail=str(err)) from None
    if member not in index:
        raise DataError(str(path), "shard member exists", detail=member)
    offset, size = index[member]
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise DataError(str(path), "shard member is complete", detail=f"{member}: {len(data)}/{size} bytes")
    return data


def iter_items(
    manifest_df: pd.DataFrame,
    base_dir: str | os.PathLike[str] | None = None,
    s3_endpoint_url: str | None = None,
) -> Iterator[tuple[pd.Series, bytes]]:
    """Yield (row, media bytes) for every manifest row, reading one local shard at a time, start to end.

    Rows are grouped by shard (shards in order of first appearance, members in tar order); rows whose
    uri is a plain file or an S3 object follow in manifest order. A row whose medium is absent raises
    DataError naming its position in the manifest (0-based); `row.name` is the DataFrame index.
    """
    by_shard: dict[str, dict[str, list[Any]]] = {}
    singles: list[Any] = []
    for index, uri in enumerate(manifest_df["uri"]):
        container, member = split_uri(str(uri))
        if member is None or container.startswith("s3://"):
            singles.append(index)
        else:
            by_shard.setdefault(container, {}).setdefault(member, []).append(index)
    for container, members in by_shard.items():
        path = _local(container, base_dir)
        if not path.is_file():
            first = next(iter(members.values()))[0]
            raise DataError(str(path), "media file exists", row=first)
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    rows = members.pop(info.name, None)
                    if rows is None or not info.isfile():
                        continue
                    handle = tar.extractfile(info)
                    data = handle.read() if handle is not None else b""
                    for index in rows:
                        yield manifest_df.iloc[index], data
        except tarfile.TarError as err:
            first = next(iter(members.values()))[0] if members else None
            raise DataError(str(path), "shard is a readable tar file", row=first, detail=str(err)) from None
        if members:
            member, rows = next(iter(members.items()))
            raise DataError(str(path), "shard member exists", row=rows[0], detail=member)
    for index in singles:
        row = manifest_df.iloc[index]
        try:
            data = read_media_bytes(str(row["uri"]), base_dir, s3_endpoint_url)
        except DataError as err:
            raise DataError(err.file, err.rule, row=index, detail=err.detail) from None
        yield row, data
