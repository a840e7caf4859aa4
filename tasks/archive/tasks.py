"""Prefect tasks over the plate archive steps: names for the UI, retries for transient errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import task

from tasks.archive import bundle, delete, listing, verify
from tasks.core.concurrency import together
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.plates.work import PlateWork

#: Bundles of one plate a streaming archive builds at once.
STREAMED_BUNDLES = 2


@task(name="find-archive", task_run_name="find-archive-{work.tag}", **PLAIN, **TRANSIENT)
def find_archive(work: PlateWork) -> tuple[verify.RecordedArchive | None, str]:
    """Is this plate's archive already complete and verified?"""
    return verify.find_complete_archive(work)


@task(name="measure-plate", task_run_name="measure-{work.tag}", **PLAIN, **TRANSIENT)
def measure_plate(work: PlateWork) -> listing.PlateListing:
    """Count a plate's objects and bytes (dry run: writes nothing)."""
    return listing.measure_plate(work)


@task(name="list-plate", task_run_name="list-{work.tag}", **PLAIN, **TRANSIENT)
def list_plate(work: PlateWork) -> listing.PlateListing:
    """List the plate's source prefixes into scratch listings."""
    return listing.list_plate(work)


@task(name="preflight-scratch", task_run_name="preflight-{work.tag}", **PLAIN)
def preflight(work: PlateWork, plate_listing: listing.PlateListing) -> int:
    """Check (and reserve) scratch space for the staged plate."""
    return bundle.reserve_for(work, plate_listing)


@task(name="build-bundle", task_run_name="stage-tar-upload-{work.tag}-{name}", **PLAIN, **TRANSIENT)
def build_bundle(work: PlateWork, name: str) -> bundle.BundleResult:
    """Stage, tar, upload and ETag-check one bundle."""
    return bundle.build_bundle(work, name)


def build_bundles(work: PlateWork) -> list[bundle.BundleResult]:
    """Every bundle's tarball, uploaded and verified, in the layout's order. Streaming,
    :data:`STREAMED_BUNDLES` at once: each holds only its window of reads and parts, and a
    small bundle's round trips and bytes go while a large one's do. Staged, one after
    another: scratch holds one bundle's tarball at a time (:func:`bundle.scratch_need`)."""
    calls = [partial(build_bundle, work, name) for name in work.where.bundles]
    return together(*calls, at_most=STREAMED_BUNDLES if work.settings.streaming else 1)


@task(name="verify-listings", task_run_name="verify-listings-{work.tag}", **PLAIN, **TRANSIENT)
def verify_listings(work: PlateWork) -> int:
    """Compare the tar listing with the S3 listing; upload listings and the delete script."""
    return verify.verify_listings(work)


@task(name="recorded-listing", task_run_name="recorded-listing-{work.tag}", **PLAIN, **TRANSIENT)
def recorded_entries(work: PlateWork) -> Path:
    """Fetch an earlier run's listings as the record to delete against."""
    return verify.recorded_entries(work)


@task(name="delete-verified", task_run_name="delete-verified-{work.tag}", **PLAIN, **TRANSIENT)
def delete_verified(work: PlateWork, recorded: Path) -> delete.DeleteOutcome:
    """Re-check every source against the record and delete exactly the verified ones."""
    return delete.gate_and_delete(work, recorded)
