"""Prefect tasks over the plate archive steps: names for the UI, retries for transient errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import task

from tasks.archive import bundle, delete, listing, verify
from tasks.core.concurrency import pipelined, together
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
def preflight(work: PlateWork, plate_listing: listing.PlateListing) -> bool:
    """Check (and reserve) scratch space for the staged plate; returns whether its bundles
    may overlap (:func:`bundle.reserve_for`)."""
    return bundle.reserve_for(work, plate_listing)


@task(name="build-bundle", task_run_name="stage-tar-upload-{work.tag}-{name}", **PLAIN, **TRANSIENT)
def build_bundle(work: PlateWork, name: str) -> bundle.BundleResult:
    """Stream, tar, upload and check one bundle."""
    return bundle.build_bundle(work, name)


@task(name="stage-tar", task_run_name="stage-tar-{work.tag}-{name}", **PLAIN, **TRANSIENT)
def make_tarball(work: PlateWork, name: str) -> bundle.Tarball:
    """Download one bundle's objects to scratch and tar them."""
    return bundle.make_tarball(work, name)


@task(
    name="upload-check", task_run_name="upload-check-{work.tag}-{made.bundle}", **PLAIN, **TRANSIENT
)
def ship_tarball(work: PlateWork, made: bundle.Tarball) -> bundle.BundleResult:
    """Upload one staged tarball, check it against S3 and write its sidecars."""
    return bundle.ship_tarball(work, made)


def build_bundles(work: PlateWork, overlap: bool = False) -> list[bundle.BundleResult]:
    """Every bundle's tarball, uploaded and verified, in the layout's order. Streaming,
    :data:`STREAMED_BUNDLES` at once: each holds only its window of reads and parts, and a
    small bundle's round trips and bytes go while a large one's do. Staged, tarred one after
    another, each tarball uploaded while the next bundle downloads when ``overlap`` (scratch
    has room for two tarballs, :func:`bundle.scratch_need`), else after it."""
    names = work.where.bundles
    if work.settings.streaming:
        calls = [partial(build_bundle, work, name) for name in names]
        return together(*calls, at_most=STREAMED_BUNDLES)
    return pipelined(
        names,
        partial(make_tarball, work),
        partial(ship_tarball, work),
        overlap=overlap,
    )


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
