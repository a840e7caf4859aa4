"""How much scratch a plate reserves: the tarball and a window of staged objects, not the plate."""

from __future__ import annotations

import random
import shutil

import pytest

import tasks.plates.work as work_module
from tasks.archive.bundle import (
    SCRATCH_MARGIN,
    STREAMING_MARGIN,
    reserve_for,
    scratch_need,
    tarball_bound,
)
from tasks.archive.listing import PlateListing, keep_largest
from tasks.archive.staging import staged_budget, staged_window
from tasks.core.errors import ScratchSpaceError
from tasks.core.s3 import MIB
from tasks.formats.plates_csv import Plate
from tasks.plates.work import PlateSettings, PlateWork


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


def test_overlapped_bundles_reserve_a_tarball_beside_the_next_bundle_being_built():
    listing = PlateListing(
        objects={"images": 1000, "backend": 10},
        bytes={"images": 1000 * MIB, "backend": 300 * MIB},
        window_bytes={"images": 64 * MIB, "backend": 300 * MIB},
    )
    images, backend = tarball_bound(1000 * MIB, 1000), tarball_bound(300 * MIB, 10)
    listings = listing.total_objects * 1024
    alone = scratch_need(listing)
    assert alone == listings + images + 64 * MIB + SCRATCH_MARGIN
    # the backend bundle downloads while the images tarball uploads
    assert scratch_need(listing, overlapped=True) == (
        listings + images + backend + 300 * MIB + SCRATCH_MARGIN
    )


@pytest.mark.parametrize(("free_mib", "overlap"), [(10_000, True), (1_700, False)])
def test_bundles_overlap_only_when_scratch_has_room_for_both(
    tmp_path, monkeypatch, free_mib, overlap
):
    listing = PlateListing(
        objects={"images": 1000, "backend": 10},
        bytes={"images": 1000 * MIB, "backend": 300 * MIB},
        window_bytes={"images": 64 * MIB, "backend": 300 * MIB},
    )
    assert scratch_need(listing) < 1_700 * MIB < scratch_need(listing, overlapped=True)
    usage = shutil.disk_usage(tmp_path)._replace(free=free_mib * MIB)
    monkeypatch.setattr(work_module.shutil, "disk_usage", lambda _: usage)
    settings = PlateSettings("p", "b", "live", "cold", scratch_dir=str(tmp_path))
    work = PlateWork.create(settings, Plate("P1", "P1_full"))
    try:
        assert reserve_for(work, listing) is overlap
        assert work_module._reserved[work.tag] == scratch_need(listing, overlapped=overlap)
    finally:
        work_module._reserved.pop(work.tag, None)
    monkeypatch.setattr(work_module.shutil, "disk_usage", lambda _: usage._replace(free=MIB))
    with pytest.raises(ScratchSpaceError, match="needs"):
        reserve_for(work, listing)
