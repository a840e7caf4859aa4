"""How much scratch a plate reserves: the tarball and a window of staged objects, not the plate."""

from __future__ import annotations

import random

from tasks.archive.bundle import SCRATCH_MARGIN, STREAMING_MARGIN, scratch_need, tarball_bound
from tasks.archive.listing import PlateListing, keep_largest
from tasks.archive.staging import staged_budget, staged_window
from tasks.core.s3 import MIB


def test_keep_largest_keeps_the_n_largest_sizes():
    rng = random.Random(7)
    sizes = [rng.randrange(10**9) for _ in range(10_000)]
    assert len(set(sizes)) > 9_000
    heap: list[int] = []
    for size in sizes:
        keep_largest(heap, size, 33)
    assert sorted(heap) == sorted(sizes)[-33:]


def test_a_staged_plate_reserves_its_largest_tarball_and_window_not_every_object():
    # two bundles: 1,000 images of 300 MiB and 10 CSVs of 1 MiB; transfer_concurrency 16
    window = min(staged_window(16) * 300 * MIB, staged_budget(16) + 300 * MIB)
    assert window == (16 * 16 + 300) * MIB  # the byte budget binds, not the object count
    listing = PlateListing(
        objects={"images": 1000, "analysis": 10},
        bytes={"images": 1000 * 300 * MIB, "analysis": 10 * MIB},
        window_bytes={"images": window, "analysis": 10 * MIB},
    )
    need = scratch_need(listing)
    listings = listing.total_objects * 1024
    assert need == listings + tarball_bound(1000 * 300 * MIB, 1000) + window + SCRATCH_MARGIN
    # was: every object plus the largest tarball, twice the plate
    assert need < listing.total_bytes * 1.2
    assert scratch_need(listing, streaming=True) == listings + STREAMING_MARGIN


def test_a_listing_without_window_reserves_every_object():
    listing = PlateListing(objects={"images": 10}, bytes={"images": 10 * MIB})
    assert scratch_need(listing) == (
        10 * 1024 + tarball_bound(10 * MIB, 10) + 10 * MIB + SCRATCH_MARGIN
    )
