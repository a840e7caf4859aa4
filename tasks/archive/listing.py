"""Listing a plate's source prefixes into sorted files on scratch, per bundle."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from tasks.archive.staging import staged_budget, staged_window
from tasks.core.concurrency import batched, prefetch
from tasks.core.errors import EmptyPlateError
from tasks.core.listing import PAGE
from tasks.core.s3 import iter_objects
from tasks.formats.listing import (
    ObjectEntry,
    check_key,
    is_placeholder,
    listing_line,
    merge_sorted_files,
    read_entries,
    sort_file,
    write_lines,
)
from tasks.plates.work import PlateWork


@dataclass
class PlateListing:
    """What a plate holds, per bundle."""

    objects: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    placeholders: int = 0
    by_class: dict[str, int] = field(default_factory=dict)  # bytes by storage class
    #: bytes of the largest objects a bundle can have on scratch at once while it is staged
    window_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


#: Pages of each prefix listed ahead of the one being read.
PAGES_AHEAD = 2


def plate_objects(work: PlateWork) -> Iterator[tuple[str, dict]]:
    """(bundle, S3 entry) for every object under the plate's prefixes, prefix by prefix.

    The prefixes are listed at once, each a few pages ahead of the one being read: a plate's
    small prefixes (illum, analysis, backend) take a round trip each, and one after another
    they added theirs to every listing of the plate."""
    client, bucket = work.settings.client, work.settings.bucket
    prefixes = [(b, p) for b, ps in work.where.bundles.items() for p in ps]
    listings = [
        prefetch(batched(iter_objects(client, bucket, p), PAGE), PAGES_AHEAD) for _, p in prefixes
    ]
    try:
        for (bundle, _), pages in zip(prefixes, listings, strict=True):
            for page in pages:
                for obj in page:
                    yield bundle, obj
    finally:
        for pages in listings:
            pages.close()


def walk(work: PlateWork) -> Iterator[tuple[str, ObjectEntry]]:
    """(bundle, entry) for every object under the plate's prefixes, as S3 pages come in."""
    for bundle, obj in plate_objects(work):
        yield bundle, ObjectEntry.from_s3(obj)


def measure_plate(work: PlateWork) -> PlateListing:
    """Count objects and bytes per bundle without writing anything (dry runs)."""
    listing = PlateListing({b: 0 for b in work.where.bundles}, {b: 0 for b in work.where.bundles})
    for bundle, obj in plate_objects(work):
        if is_placeholder(obj["Key"], obj["Size"]):
            listing.placeholders += 1
            continue
        listing.objects[bundle] += 1
        listing.bytes[bundle] += obj["Size"]
        cls = obj.get("StorageClass", "STANDARD")
        listing.by_class[cls] = listing.by_class.get(cls, 0) + obj["Size"]
    return listing


def list_plate(work: PlateWork) -> PlateListing:
    """List the plate's prefixes into scratch files: per-bundle entries, the S3 listing
    (``_file_listing_s3.txt``) and the untrimmed listing. Raises EmptyPlateError when
    every prefix is empty and UnsupportedKeyError for keys the layout can't hold."""
    work.workdir.mkdir(parents=True, exist_ok=True)
    listing = PlateListing({b: 0 for b in work.where.bundles}, {b: 0 for b in work.where.bundles})
    window = staged_window(work.settings.transfer_concurrency)
    largest: dict[str, list[int]] = {b: [] for b in work.where.bundles}
    handles = {
        b: open(work.entries(b), "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        for b in work.where.bundles
    }
    try:
        with open(work.path("untrimmed.txt"), "w", encoding="utf-8", newline="\n") as untrimmed:
            for bundle, entry in walk(work):
                untrimmed.write(entry.untrimmed_line())
                if is_placeholder(entry.key, entry.size):
                    listing.placeholders += 1
                    continue
                check_key(entry.key)
                handles[bundle].write(entry.to_line())
                listing.objects[bundle] += 1
                listing.bytes[bundle] += entry.size
                keep_largest(largest[bundle], entry.size, window)
    finally:
        for h in handles.values():
            h.close()
    budget = staged_budget(work.settings.transfer_concurrency)
    listing.window_bytes = {  # the window's objects, or the byte budget and one more
        b: min(sum(sizes), budget + max(sizes, default=0)) for b, sizes in largest.items()
    }
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


def keep_largest(sizes: list[int], size: int, n: int) -> None:
    """Keep the ``n`` largest sizes seen in the min-heap ``sizes``."""
    if len(sizes) < n:
        heapq.heappush(sizes, size)
    elif size > sizes[0]:
        heapq.heapreplace(sizes, size)


def bundle_totals(work: PlateWork, bundle: str) -> tuple[int, int]:
    """(objects, bytes) of one bundle, from its listing on scratch."""
    count = nbytes = 0
    for e in read_entries(work.entries(bundle)):
        count += 1
        nbytes += e.size
    return count, nbytes
