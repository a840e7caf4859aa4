"""The steps of archiving one plate, as plain functions over a :class:`PlateWork`.

Each step reads and writes files in the plate's scratch folder and returns
small values; :mod:`tasks.archive_tasks` wraps them as Prefect tasks and
:mod:`flows.archive` strings them together. The order is the runbook's:
list → preflight → per bundle (stage → tar → upload → compare ETag → sidecars)
→ compare listings → gate → delete.
"""

from __future__ import annotations

import filecmp
import shlex
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tasks.checksums import HashingWriter, MultipartHasher
from tasks.deletion import delete_entries
from tasks.errors import (
    ArchiveVerificationError,
    ColdflowError,
    EmptyPlateError,
    ScratchSpaceError,
    SourceChangedError,
    sample,
)
from tasks.layout import CELLPAINTING, Layout, PlateLayout
from tasks.listing import (
    ObjectEntry,
    check_key,
    compare_entries,
    is_placeholder,
    listing_line,
    merge_sorted_files,
    read_entries,
    sort_file,
    write_lines,
)
from tasks.plates import Plate
from tasks.s3 import (
    MIB,
    get_text,
    head,
    iter_objects,
    part_size_for,
    put_text,
    s3_client,
    strip_etag,
    upload_path,
)
from tasks.staging import stage_entries, staged_path
from tasks.streaming import ListingTee, MultipartWriter, read_ahead
from tasks.tarball import MemberSource, epoch, tar_listing_lines, write_tarball

#: Head room kept free on scratch beyond what a plate needs.
SCRATCH_MARGIN = 256 * MIB
#: Tarball parts uploaded at once: each is a part in memory, and a few fill the link.
UPLOAD_PARTS_IN_FLIGHT = 4
#: Streaming keeps only listings on scratch.
STREAMING_MARGIN = 16 * MIB

STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)


@dataclass(frozen=True)
class ArchiveSettings:
    """Everything a plate's archive steps need besides the plate (small and picklable)."""

    project_name: str
    batch_id: str
    bucket: str
    cold_bucket: str
    scratch_dir: str
    storage_class: str = "DEEP_ARCHIVE"
    delete_source: bool = False
    keep_scratch: bool = False
    compression: str = "gzip"
    compression_level: int | None = None
    compression_threads: int | None = None
    transfer_concurrency: int = 16
    part_size_mib: int = 8
    streaming: bool = False
    conditional_delete: bool = True
    credentials_block: str | None = None
    layout: Layout = field(default_factory=lambda: CELLPAINTING)

    @property
    def client(self) -> Any:
        return s3_client(self.credentials_block)


@dataclass(frozen=True)
class PlateWork:
    """One plate's archive job: settings, resolved keys, and its scratch folder."""

    settings: ArchiveSettings
    plate: Plate
    where: PlateLayout

    @classmethod
    def create(cls, settings: ArchiveSettings, plate: Plate) -> PlateWork:
        where = settings.layout.for_plate(
            settings.project_name, settings.batch_id, plate.plate_id, plate.plate_id_full
        )
        return cls(settings, plate, where)

    @property
    def tag(self) -> str:
        return self.where.tag

    @property
    def workdir(self) -> Path:
        return Path(self.settings.scratch_dir) / self.tag

    def path(self, name: str) -> Path:
        return self.workdir / name

    def entries(self, bundle: str) -> Path:
        return self.path(f"entries_{bundle}.tsv")


@dataclass
class PlateListing:
    """What a plate holds, per bundle."""

    objects: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    placeholders: int = 0

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass
class BundleResult:
    """One uploaded, verified tarball."""

    bundle: str
    key: str
    objects: int
    bytes: int
    tarball_bytes: int
    md5: str
    etag: str
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DeleteOutcome:
    deleted: int
    vanished: int
    failed: int
    failures: list[str]


def _walk(work: PlateWork):
    """(bundle, entry) for every object under the plate's prefixes, as S3 pages come in."""
    client, bucket = work.settings.client, work.settings.bucket
    for bundle, prefixes in work.where.bundles.items():
        for prefix in prefixes:
            for obj in iter_objects(client, bucket, prefix):
                yield bundle, ObjectEntry.from_s3(obj)


def measure_plate(work: PlateWork) -> PlateListing:
    """Count objects and bytes per bundle without writing anything (dry runs)."""
    listing = PlateListing({b: 0 for b in work.where.bundles}, {b: 0 for b in work.where.bundles})
    for bundle, entry in _walk(work):
        if is_placeholder(entry.key, entry.size):
            listing.placeholders += 1
            continue
        listing.objects[bundle] += 1
        listing.bytes[bundle] += entry.size
    return listing


def list_plate(work: PlateWork) -> PlateListing:
    """List the plate's prefixes into scratch files: per-bundle entries, the S3 listing
    (``_file_listing_s3.txt``) and the untrimmed listing. Raises EmptyPlateError when
    every prefix is empty and UnsupportedKeyError for keys the layout can't hold."""
    work.workdir.mkdir(parents=True, exist_ok=True)
    listing = PlateListing({b: 0 for b in work.where.bundles}, {b: 0 for b in work.where.bundles})
    handles = {
        b: open(work.entries(b), "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        for b in work.where.bundles
    }
    try:
        with open(work.path("untrimmed.txt"), "w", encoding="utf-8", newline="\n") as untrimmed:
            for bundle, entry in _walk(work):
                untrimmed.write(entry.untrimmed_line())
                if is_placeholder(entry.key, entry.size):
                    listing.placeholders += 1
                    continue
                check_key(entry.key)
                handles[bundle].write(entry.to_line())
                listing.objects[bundle] += 1
                listing.bytes[bundle] += entry.size
    finally:
        for h in handles.values():
            h.close()
    if listing.total_objects == 0:
        raise EmptyPlateError(
            f"{work.tag}: nothing to archive, every prefix is empty: "
            + ", ".join(f"s3://{work.settings.bucket}/{p}" for p in work.where.prefixes)
        )
    parts = []
    for bundle in work.where.bundles:
        sort_file(work.entries(bundle))
        part = work.path(f"listing_s3_{bundle}.txt")
        write_lines(
            part,
            (
                listing_line(work.where.trimmed(e.key), e.size)
                for e in read_entries(work.entries(bundle))
            ),
        )
        sort_file(part)
        parts.append(part)
    merge_sorted_files(parts, work.path("listing_s3.txt"))
    return listing


def tarball_bound(nbytes: int, count: int) -> int:
    """The most a tarball of ``count`` objects totalling ``nbytes`` can take, even uncompressible
    (headers and long-name blocks, end blocks, compression framing)."""
    return nbytes + nbytes // 100 + count * 1536 + 1 * MIB


_reserved: dict[str, int] = {}
_reserved_lock = threading.Lock()


def scratch_need(listing: PlateListing, streaming: bool = False) -> int:
    """Scratch a plate needs at its peak: staged, every object plus the largest tarball;
    streaming, only its listings."""
    if streaming:
        return listing.total_objects * 1024 + STREAMING_MARGIN
    largest = max(
        (tarball_bound(listing.bytes[b], listing.objects[b]) for b in listing.objects), default=0
    )
    return listing.total_bytes + largest + SCRATCH_MARGIN


def reserve_scratch(work: PlateWork, listing: PlateListing) -> int:
    """Check scratch can hold the plate (counting plates already running in this process)
    and reserve the space; raises ScratchSpaceError, with the numbers, when it can't."""
    need = scratch_need(listing, work.settings.streaming)
    scratch = Path(work.settings.scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    with _reserved_lock:
        free = shutil.disk_usage(scratch).free
        others = sum(v for k, v in _reserved.items() if k != work.tag)
        if need > free - others:
            raise ScratchSpaceError(
                f"{work.tag}: scratch {scratch} has {free / MIB:,.0f} MiB free"
                + (f" ({others / MIB:,.0f} MiB promised to other plates)" if others else "")
                + f"; the plate needs {need / MIB:,.0f} MiB while staged "
                f"({listing.total_objects:,} objects, {listing.total_bytes / MIB:,.0f} MiB). "
                "Use a larger scratch_dir or fewer plates in parallel."
            )
        _reserved[work.tag] = need
    return need


def release_scratch(work: PlateWork) -> None:
    with _reserved_lock:
        _reserved.pop(work.tag, None)


def bundle_totals(work: PlateWork, bundle: str) -> tuple[int, int]:
    """(objects, bytes) of one bundle, from its listing on scratch."""
    count = nbytes = 0
    for e in read_entries(work.entries(bundle)):
        count += 1
        nbytes += e.size
    return count, nbytes


def build_bundle(work: PlateWork, bundle: str) -> BundleResult:
    """Tar one bundle's objects, upload the tarball and check the remote ETag.

    The tarball's MD5 and multipart ETag are computed as it is written, with the
    part size the upload then uses; its tar listing is read back from the
    compressed bytes. Writes the ``.md5`` and ``.etag`` sidecars only once the
    remote ETag equals the local one. Staged: objects are downloaded to scratch,
    tarred to a file, which is uploaded. Streaming: objects are read from S3
    into the tar stream, which goes straight into a multipart upload.
    """
    s = work.settings
    where = work.where
    count, nbytes = bundle_totals(work, bundle)
    part_size = part_size_for(tarball_bound(nbytes, count), start=s.part_size_mib * MIB)
    key = where.tarball(bundle, s.compression)
    tar_name = key.rsplit("/", 1)[-1]
    listing = work.path(f"listing_tar_{bundle}.txt")
    build = _stream_bundle if s.streaming else _staged_bundle
    hasher, remote, seconds = build(work, bundle, key, part_size, listing)
    sort_file(listing)
    if remote != hasher.etag:
        raise ArchiveVerificationError(
            f"s3://{s.cold_bucket}/{key}: remote ETag {remote} differs from the local "
            f"{hasher.etag} ({hasher.size:,} bytes, {part_size // MIB} MiB parts)"
        )
    put_text(s.client, s.cold_bucket, where.md5_sidecar(bundle), f"{hasher.md5}  {tar_name}\n")
    put_text(s.client, s.cold_bucket, where.etag_sidecar(bundle), f"{remote}\n")
    return BundleResult(bundle, key, count, nbytes, hasher.size, hasher.md5, remote, seconds)


def _staged_bundle(
    work: PlateWork, bundle: str, key: str, part_size: int, listing: Path
) -> tuple[MultipartHasher, str, dict[str, float]]:
    s = work.settings
    client, where = s.client, work.where
    seconds: dict[str, float] = {}
    entries_path = work.entries(bundle)
    stage_root = work.path(f"stage_{bundle}")

    t = time.monotonic()
    stage_entries(client, s.bucket, read_entries(entries_path), stage_root, s.transfer_concurrency)
    seconds["stage"] = time.monotonic() - t

    t = time.monotonic()
    tar_path = work.path(key.rsplit("/", 1)[-1])
    members = (
        MemberSource(
            where.member_name(e.key),
            e.size,
            epoch(e.modified),
            partial(open, staged_path(stage_root, i), "rb"),
        )
        for i, e in enumerate(read_entries(entries_path))
    )
    with open(tar_path, "wb") as raw:
        out = HashingWriter(raw, part_size)
        write_tarball(members, out, s.compression, s.compression_level, s.compression_threads)
    shutil.rmtree(stage_root)
    seconds["tar"] = time.monotonic() - t

    t = time.monotonic()
    with open(tar_path, "rb") as f:
        write_lines(listing, tar_listing_lines(f, s.compression, work.tag))
    seconds["read_back"] = time.monotonic() - t

    t = time.monotonic()
    remote = upload_path(
        client,
        tar_path,
        s.cold_bucket,
        key,
        part_size=part_size,
        concurrency=min(s.transfer_concurrency, UPLOAD_PARTS_IN_FLIGHT),
        StorageClass=s.storage_class,
    )
    seconds["upload"] = time.monotonic() - t
    tar_path.unlink()
    return out.hasher, remote, seconds


def _stream_bundle(
    work: PlateWork, bundle: str, key: str, part_size: int, listing: Path
) -> tuple[MultipartHasher, str, dict[str, float]]:
    s = work.settings
    t = time.monotonic()
    upload = MultipartWriter(
        s.client,
        s.cold_bucket,
        key,
        part_size,
        in_flight=UPLOAD_PARTS_IN_FLIGHT,
        StorageClass=s.storage_class,
    )
    tee = ListingTee(upload, listing, s.compression, work.tag)
    out = HashingWriter(tee, part_size)
    members = read_ahead(
        s.client,
        s.bucket,
        read_entries(work.entries(bundle)),
        work.where.member_name,
        workers=s.transfer_concurrency,
    )
    try:
        write_tarball(members, out, s.compression, s.compression_level, s.compression_threads)
        tee.close_listing()
        remote = upload.complete()
    except BaseException:
        upload.abort()
        if not tee.pipe.closed:
            tee.pipe.close()
        raise
    return out.hasher, remote, {"stream": time.monotonic() - t}


def diff_sorted_lines(a: Path, b: Path, limit: int = 5) -> tuple[list[str], list[str]]:
    """Lines only in ``a`` and only in ``b`` (a sample of each) of two sorted files."""
    only_a: list[str] = []
    only_b: list[str] = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        la, lb = fa.readline(), fb.readline()
        while (la or lb) and (len(only_a) < limit or len(only_b) < limit):
            if la and (not lb or la < lb):
                only_a.append(la.decode().rstrip("\n"))
                la = fa.readline()
            elif lb and (not la or lb < la):
                only_b.append(lb.decode().rstrip("\n"))
                lb = fb.readline()
            else:
                la, lb = fa.readline(), fb.readline()
    return only_a, only_b


def delete_script(work: PlateWork) -> str:
    """The ``aws s3 rm --recursive`` lines for the plate's prefixes (for deleting by hand)."""
    return "".join(
        f"aws s3 rm --recursive {shlex.quote(f's3://{work.settings.bucket}/{p}')}\n"
        for p in work.where.prefixes
    )


def upload_listing(work: PlateWork, path: Path, bucket: str, key: str) -> str:
    """Upload a listing file; identical files get identical ETags (same part size rule)."""
    return upload_path(
        work.settings.client,
        path,
        bucket,
        key,
        part_size=part_size_for(path.stat().st_size),
        concurrency=4,
    )


def verify_listings(work: PlateWork) -> int:
    """Compare the tar listing with the S3 listing and upload both, the untrimmed listing
    and the delete script. Raises ArchiveVerificationError naming what differs."""
    s, where = work.settings, work.where
    tar_listing, s3_listing = work.path("listing_tar.txt"), work.path("listing_s3.txt")
    merge_sorted_files([work.path(f"listing_tar_{b}.txt") for b in where.bundles], tar_listing)
    same = filecmp.cmp(s3_listing, tar_listing, shallow=False)
    upload_listing(work, s3_listing, s.bucket, where.s3_listing)
    upload_listing(work, tar_listing, s.bucket, where.tar_listing)
    upload_listing(work, work.path("untrimmed.txt"), s.cold_bucket, where.untrimmed_listing)
    put_text(s.client, s.bucket, where.delete_script, delete_script(work))
    if not same:
        only_s3, only_tar = diff_sorted_lines(s3_listing, tar_listing)
        raise ArchiveVerificationError(
            f"{work.tag}: the tar listing differs from the S3 listing; "
            f"only in S3: {sample(only_s3)}; only in the tarballs: {sample(only_tar)}"
        )
    with open(tar_listing, "rb") as f:
        return sum(1 for _ in f)


@dataclass
class RecordedArchive:
    """A complete archive found in the buckets: every tarball with matching sidecars and
    byte-identical S3 and tar listings."""

    tarballs: dict[str, dict]


def find_complete_archive(work: PlateWork) -> tuple[RecordedArchive | None, str]:
    """The plate's archive if it is complete and consistent, else None and the reason."""
    s, where = work.settings, work.where
    client = s.client
    tarballs: dict[str, dict] = {}
    for bundle in where.bundles:
        key = where.tarball(bundle, s.compression)
        found = head(client, s.cold_bucket, key)
        if found is None:
            return None, f"no tarball s3://{s.cold_bucket}/{key}"
        etag = strip_etag(found["ETag"])
        sidecar = get_text(client, s.cold_bucket, where.etag_sidecar(bundle))
        if sidecar is None or sidecar.strip() != etag:
            return None, f"{where.etag_sidecar(bundle)} missing or not {etag}"
        md5 = get_text(client, s.cold_bucket, where.md5_sidecar(bundle))
        if md5 is None or not md5.rstrip("\n").endswith("  " + key.rsplit("/", 1)[-1]):
            return None, f"{where.md5_sidecar(bundle)} missing or names another file"
        tarballs[bundle] = {
            "key": key,
            "bytes": int(found["ContentLength"]),
            "etag": etag,
            "md5": md5.split()[0],
        }
    if head(client, s.cold_bucket, where.untrimmed_listing) is None:
        return None, f"no {where.untrimmed_listing}"
    listed = head(client, s.bucket, where.s3_listing)
    tarred = head(client, s.bucket, where.tar_listing)
    if listed is None or tarred is None:
        return None, "S3 or tar listing missing"
    if listed["ETag"] != tarred["ETag"] or listed["ContentLength"] != tarred["ContentLength"]:
        return None, "the recorded S3 and tar listings differ"
    return RecordedArchive(tarballs), "complete"


def recorded_entries(work: PlateWork) -> Path:
    """Entries recorded by an earlier run, for deleting after a re-run: keys, sizes and times
    from the untrimmed listing, accepted only if they trim to the recorded tar listing."""
    s, where, client = work.settings, work.where, work.settings.client
    work.workdir.mkdir(parents=True, exist_ok=True)
    untrimmed, tar_listing = work.path("recorded_untrimmed.txt"), work.path("recorded_tar.txt")
    client.download_file(s.cold_bucket, where.untrimmed_listing, str(untrimmed))
    client.download_file(s.bucket, where.tar_listing, str(tar_listing))
    entries = work.path("recorded_entries.tsv")
    with open(untrimmed, encoding="utf-8", newline="\n") as f:
        write_lines(
            entries,
            (
                e.to_line()
                for e in map(ObjectEntry.from_untrimmed_line, f)
                if not is_placeholder(e.key, e.size)
            ),
        )
    sort_file(entries)
    trimmed = work.path("recorded_trimmed.txt")
    write_lines(
        trimmed, (listing_line(where.trimmed(e.key), e.size) for e in read_entries(entries))
    )
    sort_file(trimmed)
    if not filecmp.cmp(trimmed, tar_listing, shallow=False):
        raise ArchiveVerificationError(
            f"{work.tag}: the recorded untrimmed listing does not match the recorded tar "
            "listing; refusing to delete on the strength of this archive"
        )
    return entries


def gate_and_delete(work: PlateWork, recorded: Path) -> DeleteOutcome:
    """Re-list the sources and delete exactly the objects that match the recorded entries.

    Any object that changed or appeared since it was recorded stops the gate:
    nothing is deleted and SourceChangedError names the keys. Objects already
    gone are counted, not errors.
    """
    s = work.settings
    current = work.path("current.tsv")
    write_lines(current, (e.to_line() for _, e in _walk(work) if not is_placeholder(e.key, e.size)))
    sort_file(current)
    verified = work.path("verified.tsv")
    with open(verified, "w", encoding="utf-8", newline="\n") as out:
        drift = compare_entries(
            read_entries(recorded),
            read_entries(current),
            on_verified=lambda e: out.write(e.to_line()),
        )
    if not drift.clean:
        raise SourceChangedError(
            f"{work.tag}: sources changed since they were archived, nothing deleted: "
            f"{drift.n_changed} changed ({sample(drift.changed)}), "
            f"{drift.n_appeared} appeared ({sample(drift.appeared)})",
            changed=drift.changed,
            appeared=drift.appeared,
            vanished=drift.vanished,
        )
    report = delete_entries(s.client, s.bucket, read_entries(verified), s.conditional_delete)
    return DeleteOutcome(report.deleted, drift.n_vanished, report.failed, report.failures)


def clean_scratch(work: PlateWork) -> None:
    release_scratch(work)
    if not work.settings.keep_scratch:
        shutil.rmtree(work.workdir, ignore_errors=True)


@dataclass
class PlateResult:
    """One row of the run summary."""

    plate_id: str
    tag: str
    status: str  # archived | skipped | empty | failed | dry-run
    objects: int = 0
    bytes: int = 0
    tarballs: dict[str, dict] = field(default_factory=dict)
    verified: bool = False
    deleted: int = 0
    kept: int = 0
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    worker: str = ""  # host:pid that archived the plate

    @property
    def ok(self) -> bool:
        return self.status in {"archived", "skipped", "dry-run"}

    def as_dict(self) -> dict:
        return asdict(self)

    def as_row(self) -> dict:
        """A flat row for the Prefect table artifact."""
        wall = self.finished - self.started
        tar_bytes = sum(t["bytes"] for t in self.tarballs.values())
        return {
            "plate": self.plate_id,
            "status": self.status,
            "objects": self.objects,
            "MiB": round(self.bytes / MIB, 1),
            "tarball MiB": round(tar_bytes / MIB, 1),
            "ETags": " ".join(f"{b}={t['etag']}" for b, t in self.tarballs.items()),
            "verified": self.verified,
            "deleted": self.deleted,
            "kept": self.kept,
            "seconds": round(wall, 1),
            "MiB/s": round(self.bytes / MIB / wall, 1) if wall > 0 and self.bytes else 0,
            "message": self.message,
        }


def describe(exc: BaseException) -> str:
    """A one-line reason for a failed plate (never credentials: botocore messages carry none)."""
    if isinstance(exc, ColdflowError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
