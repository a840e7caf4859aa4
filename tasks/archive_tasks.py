"""Prefect tasks over the plate archive steps: names for the UI, retries for transient errors."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks import plate_archive as steps
from tasks.s3 import retry_if_transient

#: Tasks pass scratch paths and small records; nothing is cached or persisted.
PLAIN = {"cache_policy": NO_CACHE, "persist_result": False}
#: Whole-step retries, only for throttling, 5xx and dropped connections.
TRANSIENT = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


@task(name="find-archive", task_run_name="find-archive-{work.tag}", **PLAIN, **TRANSIENT)
def find_archive(work: steps.PlateWork) -> tuple[steps.RecordedArchive | None, str]:
    """Is this plate's archive already complete and verified?"""
    return steps.find_complete_archive(work)


@task(name="measure-plate", task_run_name="measure-{work.tag}", **PLAIN, **TRANSIENT)
def measure_plate(work: steps.PlateWork) -> steps.PlateListing:
    """Count a plate's objects and bytes (dry run: writes nothing)."""
    return steps.measure_plate(work)


@task(name="list-plate", task_run_name="list-{work.tag}", **PLAIN, **TRANSIENT)
def list_plate(work: steps.PlateWork) -> steps.PlateListing:
    """List the plate's source prefixes into scratch listings."""
    return steps.list_plate(work)


@task(name="preflight-scratch", task_run_name="preflight-{work.tag}", **PLAIN)
def preflight(work: steps.PlateWork, listing: steps.PlateListing) -> int:
    """Check (and reserve) scratch space for the staged plate."""
    return steps.reserve_scratch(work, listing)


@task(
    name="build-bundle", task_run_name="stage-tar-upload-{work.tag}-{bundle}", **PLAIN, **TRANSIENT
)
def build_bundle(work: steps.PlateWork, bundle: str) -> steps.BundleResult:
    """Stage, tar, upload and ETag-check one bundle."""
    return steps.build_bundle(work, bundle)


@task(name="verify-listings", task_run_name="verify-listings-{work.tag}", **PLAIN, **TRANSIENT)
def verify_listings(work: steps.PlateWork) -> int:
    """Compare the tar listing with the S3 listing; upload listings and the delete script."""
    return steps.verify_listings(work)


@task(name="recorded-listing", task_run_name="recorded-listing-{work.tag}", **PLAIN, **TRANSIENT)
def recorded_entries(work: steps.PlateWork) -> Path:
    """Fetch an earlier run's listings as the record to delete against."""
    return steps.recorded_entries(work)


@task(name="delete-verified", task_run_name="delete-verified-{work.tag}", **PLAIN, **TRANSIENT)
def delete_verified(work: steps.PlateWork, recorded: Path) -> steps.DeleteOutcome:
    """Re-check every source against the record and delete exactly the verified ones."""
    return steps.gate_and_delete(work, recorded)
