"""Prefect tasks over the restore steps: thin wrappers with names for the UI and retries."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.clients import s3_client
from tasks.core.errors import PlateFailedError, RestoreTimeout, describe
from tasks.core.log import run_logger
from tasks.core.pace import global_restore_rate, rate_cap
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.core.sensor import Backoff, wait_until_done
from tasks.core.status import ItemStatus
from tasks.formats.plates_csv import Plate
from tasks.plates.work import PlateSettings, PlateWork, clean_scratch, scratch_full
from tasks.restore import inventory as steps
from tasks.restore import plates as plate_restore
from tasks.restore.poll import PendingRestores
from tasks.restore.requests import BatchOutcome, request_batch


@task(name="inventory", task_run_name="inventory-{bucket}/{prefix}", **PLAIN, **TRANSIENT)
def take_inventory(
    bucket: str,
    prefix: str,
    workdir: str,
    filter_in: list[str] | None,
    filter_out: list[str] | None,
    batch_size: int,
    retry_ledger: str | None,
    credentials_block: str | None,
) -> steps.Inventory:
    """List (or read a previous ledger) and classify every object; write request batches."""
    client = s3_client(credentials_block)
    if retry_ledger:
        return steps.inventory_from_ledger(
            client, bucket, retry_ledger, Path(workdir), batch_size, credentials_block
        )
    return steps.take_inventory(
        client, bucket, prefix, Path(workdir), filter_in, filter_out, batch_size
    )


@task(name="request-restores", task_run_name="request-restores-{batch.number}", **PLAIN)
def request_restores(
    batch: steps.RequestBatch,
    bucket: str,
    tier: str,
    days: int,
    workers: int,
    credentials_block: str | None,
    max_requests_per_second: float | None = None,
    run: str = "",
) -> BatchOutcome:
    """Request restores for one batch of objects (it travels with the task: any worker can
    run it); per-key errors are rows of the outcome, never raised.

    Every request waits for the run's cap (shared by the run's tasks in this process) and for
    the account's budget, the Prefect global concurrency limit
    :data:`~tasks.core.pace.GLOBAL_RESTORE_LIMIT`, when the server has one."""
    client = s3_client(credentials_block, botocore_retries=False)  # each answer classified
    gates = [g for g in (rate_cap(run, max_requests_per_second), global_restore_rate()) if g]

    def gate() -> None:
        for g in gates:
            g.wait()

    return request_batch(client, bucket, batch.objects, tier, days, workers, gate=gate)


@task(name="wait-for-restores", task_run_name="wait-for-restores-{bucket}/{prefix}", **PLAIN)
def wait_for_restores(
    bucket: str,
    prefix: str,
    pending: str,
    listed: int,
    backoff: Backoff,
    credentials_block: str | None = None,
) -> dict:
    """The sensor: hold until every pending restore is readable; fail with counts on timeout.

    Re-checks only what is still pending, by listing or HEAD (whichever costs fewer
    requests), backing off between polls, and keeps a progress artifact up to date.
    Downstream tasks pass ``wait_for=[this]`` to start only after it.
    """
    watched = PendingRestores(s3_client(credentials_block), bucket, prefix, Path(pending), listed)
    if watched.count == 0:
        return {"ready": 0, "error": 0, "polls": 0, "requests": 0}
    waited = wait_until_done(
        watched.look,
        total=watched.count,
        pending=watched.count,
        backoff=backoff,
        noun="restores",
        error=RestoreTimeout,
        artifact_key="restore-progress",
        description=f"Restores readable under s3://{bucket}/{prefix}",
    )
    return {**waited.counts, "polls": waited.polls, "requests": waited.requests}


@task(name="locate-archive", task_run_name="locate-archive-{work.tag}", **PLAIN, **TRANSIENT)
def locate_archive(work: PlateWork, bundles: list[str]) -> plate_restore.ArchivedPlate:
    """Find a plate's tarballs, sidecars and stored listing (error names what is missing)."""
    return plate_restore.locate_archive(work, bundles)


@task(name="inventory-keys", **PLAIN, **TRANSIENT)
def inventory_of_keys(
    bucket: str, keys: list[str], workdir: str, credentials_block: str | None
) -> steps.Inventory:
    """Classify known keys (tarballs and sidecars) by HEAD and batch those to request."""
    return steps.inventory_of_keys(s3_client(credentials_block), bucket, keys, Path(workdir))


@task(name="unpack-bundle", task_run_name="unpack-{work.tag}-{bundle}", **PLAIN, **TRANSIENT)
def unpack_bundle(
    work: PlateWork,
    bundle: str,
    archived: plate_restore.ArchivedPlate,
    streaming: bool,
    index_path: str,
) -> dict:
    """Check a tarball (ETag, every member, MD5), then upload its members to their keys."""
    key, etag = archived.tarballs[bundle], archived.etag[bundle]
    crc = plate_restore.check_remote_etag(work, key, etag)
    local = None if streaming else plate_restore.download_tarball(work, key)
    dest = str(work.path("unpack"))
    index = plate_restore.LiveIndex(Path(index_path))
    try:
        files, nbytes = plate_restore.scan_tarball(
            work, bundle, key, local, etag, archived.md5[bundle], dest, crc
        )
        count = plate_restore.upload_members(work, bundle, key, local, etag, index, dest)
    finally:
        index.close()
        if local is not None:
            local.unlink(missing_ok=True)
    return {"files": files, "bytes": nbytes, "uploaded": count.uploaded, "skipped": count.skipped}


@task(name="verify-restored", task_run_name="verify-restored-{work.tag}", **PLAIN, **TRANSIENT)
def verify_restored(work: PlateWork, bundles: list[str], listing_key: str) -> int:
    """Every key of the stored listing is back in the live bucket with its size."""
    return plate_restore.verify_restored(work, bundles, listing_key)


@task(
    name="restore-plate",
    task_run_name="restore-{plate.plate_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def restore_plate(
    plate: Plate,
    settings: PlateSettings,
    bundles: list[str],
    located: dict[str, plate_restore.ArchivedPlate],
    streaming: bool,
) -> plate_restore.RestoredPlate:
    """One plate back to its original keys, verified. Fails with its row attached."""
    work = PlateWork.create(settings, plate)
    log = run_logger()
    row = plate_restore.RestoredPlate(
        plate.plate_id, work.tag, ItemStatus.FAILED, started=time.time()
    )
    try:
        archived = plate_restore.read_sidecars(work, located[plate.plate_id])
        work.workdir.mkdir(parents=True, exist_ok=True)
        index = str(plate_restore.LiveIndex.build(work, work.path("live.sqlite")))
        for bundle in bundles:
            t = time.monotonic()
            done = unpack_bundle(work, bundle, archived, streaming, index)
            row.seconds[bundle] = round(time.monotonic() - t, 2)
            row.files += done["files"]
            row.bytes += done["bytes"]
            row.uploaded += done["uploaded"]
            row.skipped += done["skipped"]
        row.verified = verify_restored(work, bundles, archived.listing)
        row.status = ItemStatus.RESTORED
        row.message = f"{row.verified} objects back and verified"
        log.info(
            "%s: %s (%d uploaded, %d already there)",
            work.tag,
            row.message,
            row.uploaded,
            row.skipped,
        )
    except Exception as exc:
        row.message = describe(scratch_full(work, exc) or exc)
        log.error("%s: %s", work.tag, row.message)
    finally:
        clean_scratch(work)
        row.finished = time.time()
    if row.status != ItemStatus.RESTORED:
        raise PlateFailedError(row.message, row.as_dict())
    return row
