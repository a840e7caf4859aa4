"""Verifying an archive: listings compared and recorded, complete archives recognised, and the
record an earlier run left read back for deleting after a re-run."""

from __future__ import annotations

import filecmp
import shlex
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tasks.core.concurrency import together
from tasks.core.errors import ArchiveVerificationError, sample
from tasks.core.integrity import check_stored
from tasks.core.s3 import (
    MIB,
    download,
    get_text,
    head,
    part_size_for,
    put_text,
    strip_etag,
    upload_path,
)
from tasks.formats.checksums import MultipartHasher
from tasks.formats.listing import (
    ObjectEntry,
    is_placeholder,
    listing_line,
    merge_sorted_files,
    read_entries,
    sort_file,
    write_lines,
)
from tasks.plates.work import PlateWork


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


def check_tarball(
    client: Any, bucket: str, key: str, local: MultipartHasher, part_size: int
) -> str:
    """Check an uploaded tarball against what was built (:func:`tasks.core.integrity.
    check_stored`: S3's full-object CRC64NVME, and its ETag where that is an MD5); returns
    S3's ETag."""
    return check_stored(
        client,
        bucket,
        key,
        size=local.size,
        crc64nvme=local.crc64nvme,
        etag=local.etag,
        note=f" ({local.size:,} bytes, {part_size // MIB} MiB parts)",
    )


def delete_script(work: PlateWork) -> str:
    """The ``aws s3 rm --recursive`` lines for the plate's prefixes (for deleting by hand)."""
    return "".join(
        f"aws s3 rm --recursive {shlex.quote(f's3://{work.settings.bucket}/{p}')}\n"
        for p in work.where.prefixes
    )


def upload_listing(work: PlateWork, path: Path, bucket: str, key: str) -> None:
    """Upload a listing file; identical files get identical ETags (same part size rule)."""
    upload_path(
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
    together(  # a round trip, not four
        partial(upload_listing, work, s3_listing, s.bucket, where.s3_listing),
        partial(upload_listing, work, tar_listing, s.bucket, where.tar_listing),
        partial(
            upload_listing, work, work.path("untrimmed.txt"), s.cold_bucket, where.untrimmed_listing
        ),
        partial(put_text, s.client, s.bucket, where.delete_script, delete_script(work)),
    )
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
    download(client, s.cold_bucket, where.untrimmed_listing, untrimmed)
    download(client, s.bucket, where.tar_listing, tar_listing)
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
