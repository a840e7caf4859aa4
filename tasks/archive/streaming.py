"""Streaming archives: S3 reads → tar → compression → multipart upload, no scratch copy.

Three pieces, each bounded in memory however large the plate:
- :func:`read_ahead` reads the next objects while the current one is tarred, and a large
  object as ranges at once;
- :class:`MultipartWriter` is a file object whose bytes become parts of a multipart upload;
- :class:`ListingTee` lists the tarball's members from the compressed bytes as they are
  written, so the tar listing is read back from the archive itself, not from our intentions.
"""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from functools import partial
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO

from tasks.archive.staging import RANGE_BYTES, read_entry, read_range
from tasks.core.concurrency import unordered_map
from tasks.core.errors import s3_errors
from tasks.core.retry import retry_stream
from tasks.core.s3 import MIB, strip_etag
from tasks.formats.listing import ObjectEntry, write_lines
from tasks.formats.tarball import MemberSource, epoch, tar_listing_lines

#: Bytes read ahead per unit of ``transfer_concurrency``: S3 moves each connection's bytes at a
#: bounded rate (~90 MB/s), so the bytes in flight set the read's speed. At the default of 16,
#: 64 MiB: sixteen 4 MiB images at once, as many GETs as the raw pipeline keeps out.
READ_AHEAD_PER_TRANSFER = 4 * MIB


def read_ahead_window(concurrency: int) -> int:
    """The most bytes read ahead at once for ``transfer_concurrency`` = ``concurrency``."""
    return READ_AHEAD_PER_TRANSFER * concurrency


def read_ahead(
    client: Any,
    bucket: str,
    entries: Iterable[ObjectEntry],
    member_name: Callable[[str], str],
    workers: int = 16,
    window: int = read_ahead_window(16),
) -> Iterator[MemberSource]:
    """Tar members for ``entries``: each run of small objects fetched ``workers`` at a time
    (at most ``window`` bytes waiting) and handed over as each arrives, so one slow answer
    holds up nothing behind it; a large one, once the small ones before it are in, read as
    :data:`RANGE_BYTES` ranges, as many at once as ``window`` holds, each pinned to
    the object's listed ETag (one connection would move it at one connection's rate)."""

    def fetch(entry: ObjectEntry) -> bytes:
        return retry_stream(lambda: read_entry(client, bucket, entry))

    def member(entry: ObjectEntry, opener: Callable) -> MemberSource:
        return MemberSource(member_name(entry.key), entry.size, epoch(entry.modified), opener)

    ranges_at_once = max(1, window // RANGE_BYTES)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for small, run in groupby(entries, key=lambda e: e.size <= RANGE_BYTES):
            if not small:
                for entry in run:
                    opener = partial(_RangedBody, client, bucket, entry, pool, ranges_at_once)
                    yield member(entry, opener)
                continue
            for entry, data in unordered_map(
                fetch, run, workers, weight=attrgetter("size"), budget=window, pool=pool
            ):
                yield member(entry, partial(_in_memory, data))


def _in_memory(data: bytes) -> nullcontext[BinaryIO]:
    return nullcontext(io.BytesIO(data))


class _RangedBody:
    """A large object's bytes, in order, from ranged GETs ``at_once`` ahead of the reader;
    a context manager, as a tar member's opener gives (leaving it cancels ranges not sent)."""

    def __init__(
        self, client: Any, bucket: str, entry: ObjectEntry, pool: ThreadPoolExecutor, at_once: int
    ) -> None:
        def fetch(start: int) -> bytes:
            end = min(start + RANGE_BYTES, entry.size) - 1
            return retry_stream(lambda: read_range(client, bucket, entry, start, end))

        self.starts = iter(range(0, entry.size, RANGE_BYTES))
        self.fetch, self.pool = fetch, pool
        self.pending: deque[Future[bytes]] = deque()
        self.chunk, self.offset = b"", 0
        for _ in range(at_once):
            self._next_range()

    def _next_range(self) -> None:
        start = next(self.starts, None)
        if start is not None:
            self.pending.append(self.pool.submit(self.fetch, start))

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(iter(partial(self.read, RANGE_BYTES), b""))
        if self.offset == len(self.chunk):
            if not self.pending:
                return b""
            self.chunk, self.offset = self.pending.popleft().result(), 0
            self._next_range()
        end = min(len(self.chunk), self.offset + n)
        data = self.chunk[self.offset : end]
        self.offset = end
        return data

    def __enter__(self) -> _RangedBody:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.pending:
            future.cancel()


class MultipartWriter:
    """Bytes written here are uploaded as ``part_size`` parts, a few in flight at a time.

    ``complete(checksum)`` returns the ETag S3 gives the object. Below one part it falls
    back to a single PUT, matching :class:`tasks.checksums.MultipartHasher`'s rule. Every
    request carries a CRC64NVME: each part its own (botocore computes it), the upload the
    whole object's FULL_OBJECT value given to ``complete``, which S3 checks against the
    parts' before it completes the upload.
    """

    def __init__(
        self, client: Any, bucket: str, key: str, part_size: int, in_flight: int = 4, **extra: Any
    ) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.extra = extra
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[Future[dict]] = []
        self.pool = ThreadPoolExecutor(max_workers=in_flight)
        self.slots = threading.BoundedSemaphore(in_flight + 1)

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            with memoryview(self.buffer) as view:  # one copy of the part, not two
                chunk = bytes(view[: self.part_size])
            del self.buffer[: self.part_size]
            self._send(chunk)
        return len(data)

    def flush(self) -> None:
        pass

    def _send(self, chunk: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ChecksumAlgorithm="CRC64NVME",
                ChecksumType="FULL_OBJECT",
                **self.extra,
            )["UploadId"]
        number = len(self.parts) + 1
        self.slots.acquire()

        def upload() -> dict:
            try:
                with s3_errors(self.bucket, self.key):
                    response = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=self.key,
                        UploadId=self.upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="CRC64NVME",
                    )
                return {
                    "PartNumber": number,
                    "ETag": response["ETag"],
                    "ChecksumCRC64NVME": response["ChecksumCRC64NVME"],
                }
            finally:
                self.slots.release()

        self.parts.append(self.pool.submit(upload))

    def complete(self, checksum: str) -> str:
        """Finish the upload; ``checksum`` is the whole object's CRC64NVME (base64)."""
        try:
            if self.upload_id is None:  # smaller than one part: one PUT
                response = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=bytes(self.buffer),
                    ChecksumCRC64NVME=checksum,
                    **self.extra,
                )
                return strip_etag(response["ETag"])
            if self.buffer:
                self._send(bytes(self.buffer))
                self.buffer.clear()
            parts = [f.result() for f in self.parts]
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
                ChecksumCRC64NVME=checksum,
                ChecksumType="FULL_OBJECT",
            )
            return strip_etag(response["ETag"])
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )


class ListingTee:
    """Passes writes on to ``target`` and, through a pipe, to a thread that lists the tar
    members of the compressed stream into ``listing`` (``_file_listing_tar.txt`` lines)."""

    def __init__(self, target: Any, listing: Path, compression: str, tag: str) -> None:
        self.target = target
        read_fd, write_fd = os.pipe()
        self.pipe = os.fdopen(write_fd, "wb", buffering=1 * MIB)
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._list,
            daemon=True,
            args=(os.fdopen(read_fd, "rb"), listing, compression, tag),
        )
        self.thread.start()

    def _list(self, source: BinaryIO, listing: Path, compression: str, tag: str) -> None:
        with source:
            try:
                write_lines(listing, tar_listing_lines(source, compression, tag))
            except BaseException as exc:
                self.error = exc
            while source.read(1 * MIB):  # never leave the writer blocked on a full pipe
                pass

    def write(self, data: bytes) -> int:
        self.pipe.write(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()

    def close_listing(self) -> None:
        """End the stream and wait for the listing; raises what the lister raised."""
        self.pipe.close()
        self.thread.join()
        if self.error is not None:
            raise self.error
