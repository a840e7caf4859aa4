"""Bringing an archived plate back: locate, check, unpack safely, upload, verify.

A tarball is read twice, as a stream both times: first every member header is
checked (and the tarball's MD5 computed on the way), then, only if every
member is acceptable and the MD5 matches the sidecar, members are uploaded to
their original keys. Nothing from a tarball is uploaded unless all of it
passed. The source of the stream is a downloaded copy on scratch (``staged``)
or the S3 object itself (``streaming``, no scratch copy).
"""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from awscrt.checksums import crc64nvme

from tasks.core.concurrency import bounded_map
from tasks.core.errors import (
    ArchiveVerificationError,
    MissingArchiveError,
    UnsafeMemberError,
    UnsupportedKeyError,
    s3_errors,
    sample,
)
from tasks.core.s3 import (
    MIB,
    download,
    full_object_crc64nvme,
    get_text,
    head,
    head_checked,
    iter_objects,
    strip_etag,
)
from tasks.formats.checksums import crc64nvme_text
from tasks.formats.compression import decompressed_reader
from tasks.formats.layout import PlateLayout
from tasks.formats.listing import check_key, is_placeholder, listing_line, sort_file, write_lines
from tasks.formats.tarball import iter_members
from tasks.plates.work import PlateWork

#: Members up to this size are read into memory and uploaded by a thread pool.
SMALL_MEMBER = 8 * MIB
_READ_BUFFER = 1 * MIB


@dataclass
class ArchivedPlate:
    """The keys of one plate's archive, found in the buckets."""

    tarballs: dict[str, str]  # bundle -> tarball key
    md5: dict[str, str]  # bundle -> hex digest from the .md5 sidecar
    etag: dict[str, str]  # bundle -> ETag from the .etag sidecar
    listing: str  # live-bucket key of _file_listing_s3.txt


def locate_archive(work: PlateWork, bundles: list[str]) -> ArchivedPlate:
    """Find a plate's tarballs, sidecars and listing (by HEAD: a lifecycle rule may have
    archived the sidecars too, so they are read only after the restore); the error names
    every missing key."""
    s, where = work.settings, work.where
    client = s.client
    missing: list[str] = []
    tarballs = {}
    for bundle in bundles:
        key = where.tarball(bundle, s.compression)
        for needed in (key, where.md5_sidecar(bundle), where.etag_sidecar(bundle)):
            if head(client, s.cold_bucket, needed) is None:
                missing.append(f"s3://{s.cold_bucket}/{needed}")
        tarballs[bundle] = key
    if head(client, s.bucket, where.s3_listing) is None:
        missing.append(f"s3://{s.bucket}/{where.s3_listing}")
    if missing:
        raise MissingArchiveError(
            f"{work.tag}: not archived (or incompletely): missing {', '.join(missing)}"
        )
    return ArchivedPlate(tarballs, {}, {}, where.s3_listing)


def archive_keys(work: PlateWork, archived: ArchivedPlate) -> list[str]:
    """The cold-bucket keys a restore must bring back: tarballs and their sidecars."""
    where = work.where
    return [
        k
        for bundle, tarball in archived.tarballs.items()
        for k in (tarball, where.md5_sidecar(bundle), where.etag_sidecar(bundle))
    ]


def read_sidecars(work: PlateWork, archived: ArchivedPlate) -> ArchivedPlate:
    """The plate with its ``.md5`` and ``.etag`` sidecars read (once they are readable)."""
    s, where = work.settings, work.where
    md5s, etags = {}, {}
    for bundle in archived.tarballs:
        md5 = get_text(s.client, s.cold_bucket, where.md5_sidecar(bundle))
        etag = get_text(s.client, s.cold_bucket, where.etag_sidecar(bundle))
        if md5 is None or etag is None:
            raise MissingArchiveError(f"{work.tag}: the {bundle} sidecars vanished")
        md5s[bundle], etags[bundle] = md5.split()[0], etag.strip()
    return ArchivedPlate(dict(archived.tarballs), md5s, etags, archived.listing)


def check_member(info: tarfile.TarInfo, where: PlateLayout, bundle: str, dest: str) -> str | None:
    """The key a member restores to, None for a directory entry; UnsafeMemberError for a
    member that is not a plain file inside this plate's prefixes of this bundle."""
    try:
        tarfile.data_filter(info, dest)  # absolute paths, '..', links out, devices
    except tarfile.FilterError as exc:
        raise UnsafeMemberError(f"unsafe member {info.name!r}: {exc}") from exc
    if info.isdir():
        name = info.name.rstrip("/")
        if name != where.tag and not name.startswith(f"{where.tag}/"):
            raise UnsafeMemberError(f"member {info.name!r} is outside {where.tag}/")
        return None
    if not info.isreg():
        raise UnsafeMemberError(f"member {info.name!r} is a link or special file")
    key = where.key_of_member(info.name)
    if key is None:
        raise UnsafeMemberError(f"member {info.name!r} is outside {where.tag}/")
    try:
        check_key(key)
    except UnsupportedKeyError as exc:
        raise UnsafeMemberError(f"member {info.name!r}: {exc}") from exc
    if where.bundle_of(key) != bundle:
        raise UnsafeMemberError(f"member {info.name!r} is not under this plate's {bundle} prefixes")
    return key


class _HashingReader:
    """Reads through to a file object, hashing what passes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.md5, self.size, self.crc = raw, hashlib.md5(), 0, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.md5.update(data)
        self.crc = crc64nvme(data, self.crc)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(_READ_BUFFER):
            pass


@contextmanager
def open_tarball(work: PlateWork, key: str, local: Path | None, etag: str) -> Iterator[BinaryIO]:
    """The tarball as a stream: the staged copy, or the S3 object pinned to its ETag."""
    if local is not None:
        with open(local, "rb") as f:
            yield f
        return
    s = work.settings
    with s3_errors(s.cold_bucket, key):
        body = s.client.get_object(Bucket=s.cold_bucket, Key=key, IfMatch=f'"{etag}"')["Body"]
    try:
        yield body
    finally:
        body.close()


def scan_tarball(
    work: PlateWork,
    bundle: str,
    key: str,
    local: Path | None,
    etag: str,
    expected_md5: str,
    dest: str,
    expected_crc64nvme: str | None = None,
) -> tuple[int, int]:
    """Pass 1: check every member, the tarball's MD5 and, where S3 stores one, its full-object
    CRC64NVME; returns (files, bytes)."""
    compression = work.settings.compression
    files = nbytes = 0
    with open_tarball(work, key, local, etag) as raw:
        reader = _HashingReader(raw)
        for info in iter_members(reader, compression):
            if check_member(info, work.where, bundle, dest) is not None:
                files += 1
                nbytes += info.size
        reader.drain()
    if reader.md5.hexdigest() != expected_md5:
        raise ArchiveVerificationError(
            f"{work.tag}: {key} has MD5 {reader.md5.hexdigest()}, its .md5 sidecar says "
            f"{expected_md5}; nothing uploaded"
        )
    crc = crc64nvme_text(reader.crc)
    if expected_crc64nvme is not None and crc != expected_crc64nvme:
        raise ArchiveVerificationError(
            f"{work.tag}: {key} read with CRC64NVME {crc}, S3 stores {expected_crc64nvme}; "
            "nothing uploaded"
        )
    return files, nbytes


class LiveIndex:
    """Sizes of the plate's objects already in the live bucket, on disk (sqlite), so a
    re-run skips what is back without holding a million keys in memory."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)

    @classmethod
    def build(cls, work: PlateWork, path: Path) -> Path:
        """List the plate's live prefixes into an index file; returns its path."""
        index = cls(path)
        index.db.execute("CREATE TABLE IF NOT EXISTS live (key TEXT PRIMARY KEY, size INTEGER)")
        s = work.settings
        for prefix in work.where.prefixes:
            rows = ((o["Key"], o["Size"]) for o in iter_objects(s.client, s.bucket, prefix))
            index.db.executemany("INSERT OR REPLACE INTO live VALUES (?, ?)", rows)
        index.db.commit()
        index.close()
        return path

    def has(self, key: str, size: int) -> bool:
        row = self.db.execute("SELECT size FROM live WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] == size

    def close(self) -> None:
        self.db.close()


@dataclass
class UploadCount:
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0


def upload_members(
    work: PlateWork,
    bundle: str,
    key: str,
    local: Path | None,
    etag: str,
    index: LiveIndex,
    dest: str,
) -> UploadCount:
    """Pass 2: upload every member to its original key (skipping those already back).

    Small members are read and put by a thread pool; large ones stream through
    s3transfer's multipart upload, which parallelises parts itself.
    """
    s = work.settings
    client, compression = s.client, s.compression
    count = UploadCount()

    def put(item: tuple[str, bytes]) -> int:
        k, data = item
        with s3_errors(s.bucket, k):
            client.put_object(Bucket=s.bucket, Key=k, Body=data)
        return len(data)

    with (
        open_tarball(work, key, local, etag) as raw,
        tarfile.open(
            fileobj=decompressed_reader(raw, compression), mode="r|", encoding="utf-8"
        ) as tar,
    ):

        def members() -> Iterator[tuple[str, bytes]]:
            for info in tar:
                target = check_member(info, work.where, bundle, dest)
                if target is None:
                    continue
                if index.has(target, info.size):
                    count.skipped += 1
                    continue
                body = tar.extractfile(info)
                assert body is not None
                if info.size <= SMALL_MEMBER:
                    yield target, body.read()
                else:
                    client.upload_fileobj(body, s.bucket, target)
                    count.uploaded += 1
                    count.bytes += info.size

        for size in bounded_map(
            put, members(), workers=s.transfer_concurrency, in_flight=s.transfer_concurrency * 2
        ):
            count.uploaded += 1
            count.bytes += size
    return count


def verify_restored(work: PlateWork, bundles: list[str], listing_key: str) -> int:
    """Every key of the stored S3 listing (for these bundles) is back with its size.
    Returns how many were checked; raises ArchiveVerificationError naming what is not."""
    s, where = work.settings, work.where
    stored = work.path("stored_listing.txt")
    download(s.client, s.bucket, listing_key, stored)
    wanted = work.path("wanted.txt")
    root = where.layout.source_root
    with open(stored, encoding="utf-8", newline="\n") as f:
        write_lines(
            wanted,
            (line for line in f if where.bundle_of(root + line.split("\t", 1)[0]) in bundles),
        )
    sort_file(wanted)
    current = work.path("current_listing.txt")
    write_lines(
        current,
        (
            listing_line(where.trimmed(o["Key"]), o["Size"])
            for prefix in where.prefixes
            for o in iter_objects(s.client, s.bucket, prefix)
            if not is_placeholder(o["Key"], o["Size"]) and where.bundle_of(o["Key"]) in bundles
        ),
    )
    sort_file(current)
    missing: list[str] = []
    n_missing = checked = 0
    with open(wanted, "rb") as fw, open(current, "rb") as fc:
        have = fc.readline()
        for line in fw:
            checked += 1
            while have and have < line:
                have = fc.readline()
            if have != line:
                n_missing += 1
                if len(missing) < 20:
                    missing.append(line.decode().rstrip("\n").replace("\t", " "))
    if n_missing:
        raise ArchiveVerificationError(
            f"{work.tag}: {n_missing} of {checked} listed objects are not back with their "
            f"size: {sample(missing)}"
        )
    return checked


@dataclass
class RestoredPlate:
    """One row of the restore summary."""

    plate_id: str
    tag: str
    status: str  # restored | failed
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0
    verified: int = 0
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def download_tarball(work: PlateWork, key: str) -> Path:
    """Staged mode: the tarball on scratch."""
    s = work.settings
    work.workdir.mkdir(parents=True, exist_ok=True)
    path = work.path(key.rsplit("/", 1)[-1])
    return download(s.client, s.cold_bucket, key, path)


def check_remote_etag(work: PlateWork, key: str, expected: str) -> str | None:
    """The tarball in the cold bucket is the one archived: its ETag equals the sidecar's.

    Returns S3's full-object CRC64NVME of it (None for archives uploaded without one, such as
    the shell scripts'), which the bytes read must match too."""
    s = work.settings
    found = head_checked(s.client, s.cold_bucket, key)
    actual = strip_etag(found["ETag"])
    if actual != expected:
        raise ArchiveVerificationError(
            f"{work.tag}: {key} has ETag {actual}, its .etag sidecar says {expected}"
        )
    return full_object_crc64nvme(found)
