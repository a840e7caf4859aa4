"""Downloading a plate's objects to scratch, pinned to the ETags they were listed with."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from tasks.core.concurrency import unordered_map
from tasks.core.errors import SourceChangedError, is_missing, translate
from tasks.core.retry import retry_stream
from tasks.core.s3 import MIB
from tasks.formats.listing import ObjectEntry

_COPY_BUFFER = 256 * 1024
#: Objects above this size are read as ranges of it, several at once (staged and streaming).
RANGE_BYTES = 8 * MIB
#: Ranges of one object a staged download reads at once.
RANGES_AT_ONCE = 8
#: Objects staged ahead of the tar writer, per download thread.
AHEAD_PER_THREAD = 4
#: Download threads per unit of ``transfer_concurrency``: a small object's download is one
#: round trip, so holding S3's read ceiling takes ~ceiling x latency of them at once (165 at
#: 5,500 GET/s and 30 ms); the read pace (tasks.core.pace) decides how many are really out.
DOWNLOADS_PER_TRANSFER = 12
#: Bytes staged ahead of the tar writer per unit of ``transfer_concurrency``: large objects
#: are bound by bandwidth, not by requests in flight, and must not fill scratch.
AHEAD_BYTES_PER_TRANSFER = 16 * MIB


def download_workers(concurrency: int) -> int:
    """Download threads for a plate archived with ``transfer_concurrency`` = ``concurrency``."""
    return DOWNLOADS_PER_TRANSFER * concurrency


def staged_budget(concurrency: int) -> int:
    """The most bytes staged ahead of the tar writer (one object more, however large)."""
    return AHEAD_BYTES_PER_TRANSFER * concurrency


def staged_window(concurrency: int) -> int:
    """The most objects on scratch at once while a bundle is staged with ``concurrency``
    (``transfer_concurrency``): those downloading or waiting for the tar writer, and the one
    it reads. Their bytes are bounded by :func:`staged_budget` too."""
    return AHEAD_PER_THREAD * download_workers(concurrency) + 1


def staged_path(root: Path, index: int) -> Path:
    """Where the ``index``-th object of a listing is staged.

    Files are named by position, not by key, so no key can escape scratch or
    clash with another on the file system (S3 allows both ``a/b`` and ``a/b/c``).
    """
    return root / f"{index:09d}"


def open_entry(client: Any, bucket: str, entry: ObjectEntry) -> Any:
    """The body of one object as listed (pinned to its listed ETag), as a stream.

    An object that changed (412) or vanished (404) since listing raises
    SourceChangedError naming it; an archived one says it must be restored first.
    """
    return _get_entry(client, bucket, entry)["Body"]


def _get_entry(client: Any, bucket: str, entry: ObjectEntry, **extra: Any) -> dict:
    """GetObject of an entry, pinned to its ETag, its errors said as the archive sees them."""
    if entry.etag:
        extra["IfMatch"] = f'"{entry.etag}"'
    try:
        return client.get_object(Bucket=bucket, Key=entry.key, **extra)
    except ClientError as exc:
        if is_missing(exc):
            raise SourceChangedError(
                f"s3://{bucket}/{entry.key} vanished after it was listed", vanished=[entry.key]
            ) from exc
        translated = translate(exc, bucket, entry.key)
        if translated is exc:
            raise
        raise translated from exc


def check_size(bucket: str, entry: ObjectEntry, read: int) -> None:
    if read != entry.size:
        raise SourceChangedError(
            f"s3://{bucket}/{entry.key}: listed {entry.size} bytes, read {read}",
            changed=[entry.key],
        )


def download_entry(client: Any, bucket: str, entry: ObjectEntry, path: Path) -> int:
    """Download one object as listed (same ETag, same size) to ``path``; returns its size.
    Above :data:`RANGE_BYTES`, as ranges, :data:`RANGES_AT_ONCE` at a time, each written
    where it belongs (a connection moves one range at its own rate); a range cut off
    half-way is read again."""
    if entry.size > RANGE_BYTES:
        with open(path, "wb") as f:
            f.truncate(entry.size)
            starts = range(0, entry.size, RANGE_BYTES)
            with ThreadPoolExecutor(min(RANGES_AT_ONCE, len(starts))) as pool:
                for _ in pool.map(
                    lambda start: _download_range(client, bucket, entry, f, start), starts
                ):
                    pass
        return entry.size
    body = open_entry(client, bucket, entry)
    with open(path, "wb") as f:
        shutil.copyfileobj(body, f, _COPY_BUFFER)
        written = f.tell()
    check_size(bucket, entry, written)
    return written


def _download_range(client: Any, bucket: str, entry: ObjectEntry, f: BinaryIO, start: int) -> None:
    end = min(start + RANGE_BYTES, entry.size) - 1

    def write() -> None:
        body = open_range(client, bucket, entry, start, end)
        at = start
        while chunk := body.read(_COPY_BUFFER):
            at += os.pwrite(f.fileno(), chunk, at)
        _check_range(bucket, entry, start, end, at - start)

    retry_stream(write)


def read_entry(client: Any, bucket: str, entry: ObjectEntry) -> bytes:
    """One (small) object as listed, in memory."""
    data = open_entry(client, bucket, entry).read()
    check_size(bucket, entry, len(data))
    return data


def open_range(client: Any, bucket: str, entry: ObjectEntry, start: int, end: int) -> Any:
    """Bytes ``start`` to ``end`` (inclusive) of one object as listed, as a stream; the
    answer's ``Content-Range`` must give the listed size."""
    response = _get_entry(client, bucket, entry, Range=f"bytes={start}-{end}")
    total = response.get("ContentRange", "").rpartition("/")[2]
    check_size(bucket, entry, int(total) if total.isdigit() else -1)
    return response["Body"]


def read_range(client: Any, bucket: str, entry: ObjectEntry, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of one object as listed, in memory."""
    data = open_range(client, bucket, entry, start, end).read()
    _check_range(bucket, entry, start, end, len(data))
    return data


def _check_range(bucket: str, entry: ObjectEntry, start: int, end: int, read: int) -> None:
    if read != end - start + 1:
        raise SourceChangedError(
            f"s3://{bucket}/{entry.key}: bytes {start}-{end} listed, {read} read",
            changed=[entry.key],
        )


def staged_ahead(
    client: Any,
    bucket: str,
    entries: Iterable[ObjectEntry],
    root: Path,
    concurrency: int,
    on_staged: Callable[[int], None] | None = None,
) -> Iterator[tuple[ObjectEntry, Path]]:
    """Stage entries under ``root`` (see :func:`staged_path`), :func:`download_workers` at a
    time and at most :func:`staged_budget` bytes ahead, and yield each ``(entry, path)`` as
    soon as it is on disk, in the order downloads finish, so the tarball is written while
    later objects download and one slow answer holds up nothing behind it (members'
    order in a tarball is free: its listing is sorted before it is compared). Each file is
    removed once the consumer asks for the next (it has been read by then), so scratch
    holds the tarball and a window of objects.

    A body cut off half-way is read again (:func:`retry_stream`); anything else stops the
    staging and is raised.
    """
    root.mkdir(parents=True, exist_ok=True)

    def fetch(item: tuple[int, ObjectEntry]) -> Path:
        index, entry = item
        path = staged_path(root, index)
        retry_stream(lambda: download_entry(client, bucket, entry, path))
        return path

    for (_, entry), path in unordered_map(
        fetch,
        enumerate(entries),
        workers=download_workers(concurrency),
        ahead=staged_window(concurrency) - 1,
        weight=lambda item: item[1].size,
        budget=staged_budget(concurrency),
    ):
        if on_staged is not None:
            on_staged(entry.size)
        yield entry, path
        path.unlink()
