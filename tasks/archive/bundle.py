"""Building one bundle's tarball: stage or stream its objects, tar, upload, check the ETag.

Staged: objects are downloaded to scratch, tarred to a file, which is uploaded.
Streaming: objects are read from S3 into the tar stream, which goes straight into a
multipart upload. Either way the tarball's MD5 and multipart ETag are computed as it is
written, and its tar listing is read back from the compressed bytes.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path

from tasks.archive.listing import PlateListing, bundle_totals
from tasks.archive.progress import BundleProgress, counted
from tasks.archive.staging import download_workers, staged_ahead
from tasks.archive.streaming import ListingTee, MultipartWriter, read_ahead, read_ahead_window
from tasks.archive.verify import check_tarball
from tasks.core.concurrency import together
from tasks.core.errors import ScratchSpaceError
from tasks.core.s3 import MIB, abort_incomplete_uploads, part_size_for, put_text, upload_path
from tasks.formats.checksums import HashingWriter, MultipartHasher
from tasks.formats.listing import read_entries, sort_file, write_lines
from tasks.formats.tarball import MemberSource, epoch, tar_listing_lines, write_tarball
from tasks.plates.work import PlateWork, reserve_scratch

#: Head room kept free on scratch beyond what a plate needs.
SCRATCH_MARGIN = 256 * MIB
#: A streaming archive uploads ``transfer_concurrency`` / this many tarball parts at once
#: (each a part in memory: 8 at the default of 16, as the raw pipeline); a staged tarball is
#: read from its file as it goes up, ``transfer_concurrency`` parts at once. S3 moves each
#: connection's bytes at a bounded rate, so parts in flight set the upload's speed.
TRANSFERS_PER_STREAMED_PART = 2
#: Streaming keeps only listings on scratch.
STREAMING_MARGIN = 16 * MIB


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


def tarball_bound(nbytes: int, count: int) -> int:
    """The most a tarball of ``count`` objects totalling ``nbytes`` can take, even uncompressible
    (headers and long-name blocks, end blocks, compression framing)."""
    return nbytes + nbytes // 100 + count * 1536 + 1 * MIB


def scratch_need(listing: PlateListing, streaming: bool = False, overlapped: bool = False) -> int:
    """Scratch a plate needs at its peak. Staged, each object leaves scratch once it is
    tarred, so a bundle being built holds its tarball and the objects it can have staged at
    once; bundles are built one after another, or ``overlapped``: the next one staged while
    the last one's tarball uploads (both tarballs on scratch). Plus its listings. Streaming,
    only its listings."""
    listings = listing.total_objects * 1024
    if streaming:
        return listings + STREAMING_MARGIN
    tarball = {b: tarball_bound(listing.bytes[b], listing.objects[b]) for b in listing.objects}
    building = {b: tarball[b] + listing.window_bytes.get(b, listing.bytes[b]) for b in tarball}
    peaks = list(building.values())
    if overlapped:  # in the layout's order: each bundle staged beside the last one's tarball
        peaks += [tarball[last] + building[b] for last, b in pairwise(listing.objects)]
    return listings + max(peaks, default=0) + SCRATCH_MARGIN


def reserve_for(work: PlateWork, listing: PlateListing) -> bool:
    """Reserve scratch for the plate at its peak (see :func:`scratch_need`): staged, for its
    bundles overlapped when scratch has room, else one after another (ScratchSpaceError when
    it has room for neither). Returns whether they may overlap."""
    s = work.settings
    what = f"{listing.total_objects:,} objects, {listing.total_bytes / MIB:,.0f} MiB"
    if not s.streaming and len(listing.objects) > 1:
        with contextlib.suppress(ScratchSpaceError):
            reserve_scratch(work, scratch_need(listing, overlapped=True), what)
            return True
    reserve_scratch(work, scratch_need(listing, s.streaming), what)
    return False


def abort_stale_uploads(work: PlateWork) -> int:
    """Abort the incomplete multipart uploads a crashed run left under the plate's tarball
    keys (billed until aborted), every bundle's at once; returns how many. Called before
    this run uploads anything, so none of its own are among them."""
    s = work.settings
    keys = [work.where.tarball(b, s.compression) for b in work.where.bundles]
    return sum(
        together(*(partial(abort_incomplete_uploads, s.client, s.cold_bucket, k) for k in keys))
    )


@dataclass
class Tarball:
    """One bundle's tarball as built, before it is checked against S3: where it goes, its
    hashes and tar listing, and (staged) the file on scratch that still has to go up."""

    bundle: str
    key: str
    objects: int
    bytes: int
    part_size: int
    listing: Path
    hasher: MultipartHasher
    moving: BundleProgress
    seconds: dict[str, float]
    path: Path | None = None  # staged: the file, uploaded by :func:`ship_tarball`


def build_bundle(work: PlateWork, bundle: str) -> BundleResult:
    """Tar one bundle's objects, upload the tarball and check it against S3's checksum.

    The tarball's MD5, multipart ETag and full-object CRC64NVME are computed as it is
    written, with the part size the upload then uses; the CRC64NVME goes up with the upload
    (S3 refuses bytes that don't match it) and is compared with S3's afterwards, the ETag too
    where it is an MD5 (:func:`tasks.archive.verify.check_tarball`); its tar listing is read
    back from the compressed bytes. Writes the ``.md5`` and ``.etag`` (S3's, whatever it is)
    sidecars only once the tarball is verified. Staged: objects are downloaded to scratch,
    tarred to a file (:func:`make_tarball`), which is uploaded (:func:`ship_tarball`).
    Streaming: objects are read from S3 into the tar stream, which goes straight into a
    multipart upload.
    """
    return ship_tarball(work, make_tarball(work, bundle))


def make_tarball(work: PlateWork, bundle: str) -> Tarball:
    """Staged: download the bundle's objects and tar them to a file on scratch. Streaming:
    stream them into the tarball's multipart upload. Either way with its hashes."""
    s = work.settings
    count, nbytes = bundle_totals(work, bundle)
    part_size = part_size_for(tarball_bound(nbytes, count), start=s.part_size_mib * MIB)
    key = work.where.tarball(bundle, s.compression)
    listing = work.path(f"listing_tar_{bundle}.txt")
    moving = BundleProgress(s.progress_key, work.tag, nbytes)
    build = _stream_bundle if s.streaming else _staged_bundle
    hasher, seconds, path = build(work, bundle, key, part_size, listing, moving)
    return Tarball(bundle, key, count, nbytes, part_size, listing, hasher, moving, seconds, path)


def ship_tarball(work: PlateWork, made: Tarball) -> BundleResult:
    """Upload a staged tarball's file (its tar listing read back meanwhile), then check the
    tarball against S3 and write its sidecars (see :func:`build_bundle`)."""
    s = work.settings
    if made.path is not None:
        _upload_staged(work, made, made.path)
    sort_file(made.listing)
    remote = check_tarball(s.client, s.cold_bucket, made.key, made.hasher, made.part_size)
    tar_name = made.key.rsplit("/", 1)[-1]
    together(
        partial(
            put_text,
            s.client,
            s.cold_bucket,
            work.where.md5_sidecar(made.bundle),
            f"{made.hasher.md5}  {tar_name}\n",
        ),
        partial(
            put_text, s.client, s.cold_bucket, work.where.etag_sidecar(made.bundle), f"{remote}\n"
        ),
    )
    if made.path is not None:  # kept until checked: a retried upload-check sends it again
        made.path.unlink()
    made.moving.finish()
    return BundleResult(
        made.bundle,
        made.key,
        made.objects,
        made.bytes,
        made.hasher.size,
        made.hasher.md5,
        remote,
        made.seconds,
    )


def _staged_bundle(
    work: PlateWork,
    bundle: str,
    key: str,
    part_size: int,
    listing: Path,
    moving: BundleProgress,
) -> tuple[MultipartHasher, dict[str, float], Path]:
    s = work.settings
    where = work.where
    stage_root = work.path(f"stage_{bundle}")

    # objects are tarred as they land on scratch, later ones downloading meanwhile: the
    # downloads wait on the endpoint, the compressor on this machine's cores
    t = time.monotonic()
    tar_path = work.path(key.rsplit("/", 1)[-1])
    staged = staged_ahead(
        s.client,
        s.bucket,
        read_entries(work.entries(bundle)),
        stage_root,
        s.transfer_concurrency,
        on_staged=moving.stage(1 / 3, moving.nbytes),
    )
    members = counted(
        (
            MemberSource(
                where.member_name(e.key), e.size, epoch(e.modified), partial(open, path, "rb")
            )
            for e, path in staged
        ),
        lambda m: m.size,
        moving.stage(1 / 3, moving.nbytes),
    )
    with open(tar_path, "wb") as raw:
        out = HashingWriter(raw, part_size)
        write_tarball(members, out, s.compression, s.compression_level, s.compression_threads)
    shutil.rmtree(stage_root)
    return out.hasher, {"stage_and_tar": time.monotonic() - t}, tar_path


def _upload_staged(work: PlateWork, made: Tarball, tar_path: Path) -> None:
    """Upload the tarball's file; its tar listing is read back from the file meanwhile (one
    is decompression on this machine, the other waits on the network)."""
    s = work.settings

    def read_back() -> float:
        started = time.monotonic()
        with open(tar_path, "rb") as f:
            write_lines(made.listing, tar_listing_lines(f, s.compression, work.tag))
        return time.monotonic() - started

    t = time.monotonic()
    with ThreadPoolExecutor(1, thread_name_prefix="read-back") as pool:
        reading = pool.submit(read_back)
        upload_path(
            s.client,
            tar_path,
            s.cold_bucket,
            made.key,
            part_size=made.part_size,
            concurrency=s.transfer_concurrency,
            progress=made.moving.stage(1 / 3, tar_path.stat().st_size),
            StorageClass=s.storage_class,
            ChecksumCRC64NVME=made.hasher.crc64nvme,  # a FULL_OBJECT checksum, checked by S3
        )
        made.seconds["upload"] = time.monotonic() - t
        made.seconds["read_back"] = reading.result()


def _stream_bundle(
    work: PlateWork,
    bundle: str,
    key: str,
    part_size: int,
    listing: Path,
    moving: BundleProgress,
) -> tuple[MultipartHasher, dict[str, float], None]:
    s = work.settings
    t = time.monotonic()
    upload = MultipartWriter(
        s.client,
        s.cold_bucket,
        key,
        part_size,
        in_flight=max(1, s.transfer_concurrency // TRANSFERS_PER_STREAMED_PART),
        StorageClass=s.storage_class,
    )
    tee = ListingTee(upload, listing, s.compression, work.tag)
    out = HashingWriter(tee, part_size)
    members = counted(
        read_ahead(
            s.client,
            s.bucket,
            read_entries(work.entries(bundle)),
            work.where.member_name,
            workers=download_workers(s.transfer_concurrency),
            window=read_ahead_window(s.transfer_concurrency),
        ),
        lambda m: m.size,
        moving.stage(1.0, moving.nbytes),
    )
    try:
        write_tarball(members, out, s.compression, s.compression_level, s.compression_threads)
        tee.close_listing()
        upload.complete(out.hasher.crc64nvme)
    except BaseException:
        upload.abort()
        if not tee.pipe.closed:
            tee.pipe.close()
        raise
    return out.hasher, {"stream": time.monotonic() - t}, None
