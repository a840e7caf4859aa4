"""Prefect tasks over the plate archive steps: names for the UI, retries for transient errors."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.archive import bundle, delete, listing, verify
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.plates.work import PlateWork


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
