"""Restore archived objects: a whole prefix in bulk (``restore_prefix``), or archived plates
back to their original keys (``restore_plates``).

    from flows.restore import restore_prefix
    counts = restore_prefix("imaging-cold", "imaging_analysis/2016_04_01_a549/plates/",
                            tier="Bulk", days=7, filter_in=["BR00092655"])

restore_prefix: list → classify → request each batch as it fills, under a cost ceiling (the
estimate artifact follows the listing; Expedited estimates first) → ledger → wait.
restore_plates: locate → restore tarballs (estimate, wait) → check → unpack → verify.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Literal

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import (
    DEFAULT_SCRATCH,
    raise_if_failed,
    read_batch_plates,
    rows_of,
    run_logger,
    submit_bounded,
)
from flows.requests import request_and_wait
from tasks.core.bucket_facts import READS_CURRENT, RESTORES_CURRENT, announce_buckets
from tasks.core.clients import s3_client
from tasks.core.errors import InputError, describe
from tasks.core.memory import limit_malloc_arenas
from tasks.core.s3 import Tier, check_bucket, split_s3_uri
from tasks.core.sensor import Backoff
from tasks.core.status import ItemStatus
from tasks.formats.layout import resolve_layout
from tasks.formats.ledger import check_ledger
from tasks.plates.work import PlateSettings, PlateWork
from tasks.restore import plates as plate_restore
from tasks.restore import tasks as restore_tasks
from tasks.restore.inventory import Inventory, listed_batches
from tasks.restore.plan import EXPENSIVE_GB, EXPENSIVE_OBJECTS, RequestPlan


@flow(
    name="restore-prefix", task_runner=ThreadPoolTaskRunner(max_workers=8), validate_parameters=True
)
def restore_prefix(
    bucket: str,
    prefix: str,
    tier: Tier = "Standard",
    days: Annotated[int, Field(ge=1, le=3650)] = 7,
    filter_in: list[str] | None = None,
    filter_out: list[str] | None = None,
    wait: bool = True,
    dry_run: bool = False,
    allow_expensive: bool = False,
    expensive_objects: Annotated[int, Field(ge=0)] = EXPENSIVE_OBJECTS,
    expensive_gb: Annotated[float, Field(ge=0)] = EXPENSIVE_GB,
    retry_ledger: str | None = None,
    ledger_path: str | None = None,
    ledger_s3_uri: str | None = None,
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None,
    batch_size: Annotated[int, Field(ge=100, le=10_000)] = 1000,
    parallel_batches: Annotated[int, Field(ge=1, le=8)] = 4,
    request_workers: Annotated[int, Field(ge=1, le=256)] = 64,
    max_requests_per_second: Annotated[float, Field(gt=0)] | None = None,
    poll_interval: Annotated[float, Field(gt=0)] = 60.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 60 * 3600.0,
    work_dir: str = DEFAULT_SCRATCH,
    aws_credentials_block: str | None = None,
) -> dict:
    """Request restores for every archived object under a prefix and, with ``wait``, hold until
    all are readable.

    GLACIER and DEEP_ARCHIVE objects get ``Days``; Intelligent-Tiering objects in an archive
    access tier get none; everything else needs no restore and is counted. A cost and time
    estimate is published before anything is requested.

    Args:
        bucket: Bucket holding the archived objects.
        prefix: Key prefix to restore ("" for the whole bucket).
        tier: Retrieval tier. Expedited is refused for Deep Archive and falls back to Standard
            when S3 has no Expedited capacity.
        days: How long restored copies of GLACIER / DEEP_ARCHIVE objects stay readable.
        filter_in: Keep only keys containing ANY of these substrings.
        filter_out: Drop keys containing any of these substrings.
        wait: Hold (poll) until every requested restore is readable.
        dry_run: Classify and estimate only; request nothing.
        allow_expensive: Allow Expedited above expensive_objects / expensive_gb.
        expensive_objects: Expedited on more objects than this needs allow_expensive.
        expensive_gb: Expedited on more GB than this needs allow_expensive.
        max_cost_usd: Stop requesting before the restore's estimated cost passes this (USD);
            default $100 for Standard and Expedited, none for Bulk. Standard and Bulk start
            requesting with the first listed page; Expedited, dry runs and retries estimate
            everything first.
        retry_ledger: A previous run's ledger (path or s3:// URI): retry only its errors.
        ledger_path: Where to write the ledger CSV (key, storage_class, size, status, message).
        ledger_s3_uri: Also upload the ledger to this s3:// URI.
        batch_size: Keys per request task (doubles every 200 batches).
        parallel_batches: Request tasks running at once.
        request_workers: Threads per request task: an upper bound; the process's restore pace
            (tasks.core.pace) keeps as many in flight as S3 answers without SlowDown.
        max_requests_per_second: RestoreObject requests a second this run sends at most (the
            account's ceiling is 1,000 for every job in it; a Prefect global concurrency limit
            named coldflow-restore-requests, with slot decay, shares it across runs).
        poll_interval: First wait between polls, seconds (doubles up to max_poll_interval).
        max_poll_interval: Longest wait between polls, seconds.
        timeout: Fail, with counts, if restores are still pending after this many seconds.
        work_dir: Local folder for batch files and the ledger.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Counts by status (not-archived, restored, in-progress, requested, error), fell_back,
        ready (seen readable by the sensor), the ledger path, requests made.
    """
    if ledger_s3_uri:
        split_s3_uri(ledger_s3_uri)
    if retry_ledger:
        check_ledger(retry_ledger, aws_credentials_block)
    limit_malloc_arenas()  # flat memory with pages listed by two dozen threads
    client = s3_client(aws_credentials_block)
    check_bucket(client, bucket)
    announce_buckets(client, [bucket], "restore-prefix", RESTORES_CURRENT)
    work = Path(work_dir) / f"restore-{bucket}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"

    plan = RequestPlan(
        tier,
        days,
        allow_expensive,
        expensive_objects,
        expensive_gb,
        parallel_batches,
        request_workers,
        Backoff(poll_interval, max_poll_interval, timeout),
        aws_credentials_block,
        max_cost_usd,
        max_requests_per_second,
    )
    listing = None
    if tier == "Expedited" or dry_run or retry_ledger:
        # the whole estimate before any request: Expedited mistakes cost hundreds of dollars
        inventory = restore_tasks.take_inventory(
            bucket,
            prefix,
            str(work),
            filter_in,
            filter_out,
            batch_size,
            retry_ledger,
            aws_credentials_block,
        )
    else:
        # requests start with the first listed page, under the cost ceiling
        inventory = Inventory()
        listing = listed_batches(
            inventory, client, bucket, prefix, work, filter_in, filter_out, batch_size
        )
    try:
        return request_and_wait(
            inventory,
            work,
            bucket,
            prefix,
            plan,
            wait=wait,
            dry_run=dry_run,
            ledger_path=ledger_path,
            ledger_s3_uri=ledger_s3_uri,
            listing=listing,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@flow(
    name="restore-plates",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=True,
)
def restore_plates(
    plates_csv: str,
    project_name: str,
    batch_id: str,
    bucket: str,
    cold_bucket: str,
    scratch_dir: str = DEFAULT_SCRATCH,
    tier: Tier = "Standard",
    days: Annotated[int, Field(ge=1, le=3650)] = 7,
    bundles: list[str] | None = None,
    streaming: bool = False,
    allow_expensive: bool = False,
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None,
    max_requests_per_second: Annotated[float, Field(gt=0)] | None = None,
    max_parallel_plates: Annotated[int, Field(ge=1, le=16)] = 2,
    transfer_concurrency: Annotated[int, Field(ge=1, le=64)] = 16,
    compression: Literal["gzip", "zstd"] = "gzip",
    poll_interval: Annotated[float, Field(gt=0)] = 60.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 60 * 3600.0,
    layout: str = "cellpainting",
    aws_credentials_block: str | None = None,
) -> list[dict]:
    """Bring archived plates back to their original keys in the live bucket, verified.

    Restores each plate's tarballs and their .md5 / .etag sidecars from the cold tier (cost
    estimate first, then the sensor waits), checks each tarball's ETag and MD5 against its sidecars,
    refuses any tarball with a member outside the plate's prefixes (absolute paths, '..',
    links, other plates' keys) before uploading anything from it, uploads every member to
    its original key, and verifies the live bucket against the stored S3 listing. Re-runs
    skip objects already back with the right size.

    Args:
        plates_csv: Path or s3:// URL of a CSV with columns plate_id,plate_id_full.
        project_name: Project the plates belong to.
        batch_id: Batch the plates belong to.
        bucket: Live bucket the objects go back to.
        cold_bucket: Bucket holding the tarballs and sidecars.
        scratch_dir: Local folder for staged tarballs (unused when streaming).
        tier: Retrieval tier for archived tarballs.
        days: How long restored tarballs stay readable in the cold bucket.
        bundles: Which of the layout's bundles to bring back (default: all of them).
        streaming: Read tarballs straight from S3 (twice: check, then upload) instead of
            downloading them to scratch once.
        allow_expensive: Allow Expedited above the expensive thresholds.
        max_cost_usd: Refuse, before any request, a restore estimated above this (USD);
            default $100 for Standard and Expedited, none for Bulk.
        max_requests_per_second: RestoreObject requests a second this run sends at most
            (see restore_prefix).
        max_parallel_plates: Plates unpacked at the same time.
        transfer_concurrency: Parallel uploads per plate.
        compression: Compression the tarballs were made with (gzip: .tar.gz, zstd: .tar.zst).
        poll_interval: First wait between restore polls, seconds.
        max_poll_interval: Longest wait between polls, seconds.
        timeout: Fail if tarball restores are still pending after this many seconds.
        layout: Archive layout name or JSON file path.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        One dict per plate: status, files, uploaded, skipped, bytes, verified, message.
    """
    log = run_logger()
    plates = read_batch_plates(plates_csv, project_name, batch_id, aws_credentials_block)
    resolved = resolve_layout(layout)
    chosen = list(bundles) if bundles else [b.name for b in resolved.bundles]
    unknown = [b for b in chosen if b not in {x.name for x in resolved.bundles}]
    if unknown:
        raise InputError(f"unknown bundle(s) {unknown} for layout {resolved.name}")
    settings = PlateSettings(
        project_name=project_name,
        batch_id=batch_id,
        bucket=bucket,
        cold_bucket=cold_bucket,
        scratch_dir=scratch_dir,
        compression=compression,
        transfer_concurrency=transfer_concurrency,
        credentials_block=aws_credentials_block,
        layout=resolved,
    )
    works = [PlateWork.create(settings, p) for p in plates]
    limit_malloc_arenas()  # flat memory however long the plate takes
    client = s3_client(aws_credentials_block)
    check_bucket(client, bucket)
    check_bucket(client, cold_bucket)
    announce_buckets(client, [cold_bucket, bucket], "restore-plates", READS_CURRENT)

    rows: dict[str, dict] = {}
    located: dict[str, plate_restore.ArchivedPlate] = {}
    for work in works:
        state = restore_tasks.locate_archive(work, chosen, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, plate_restore.ArchivedPlate):
            located[work.plate.plate_id] = outcome
        else:
            rows[work.plate.plate_id] = plate_restore.RestoredPlate(
                work.plate.plate_id, work.tag, ItemStatus.FAILED, message=describe(outcome)
            ).as_dict()

    if located:
        # tarballs and sidecars alike: a lifecycle rule may have archived all of them
        keys = [
            k
            for w in works
            if w.plate.plate_id in located
            for k in plate_restore.archive_keys(w, located[w.plate.plate_id])
        ]
        work_root = Path(scratch_dir) / f"restore-plates-{time.strftime('%Y%m%dT%H%M%S')}"
        plan = RequestPlan(
            tier,
            days,
            allow_expensive,
            parallel_batches=1,
            backoff=Backoff(poll_interval, max_poll_interval, timeout),
            credentials_block=aws_credentials_block,
            max_cost_usd=max_cost_usd,
            max_requests_per_second=max_requests_per_second,
        )
        try:
            inventory = restore_tasks.inventory_of_keys(
                cold_bucket, keys, str(work_root), aws_credentials_block
            )
            prefix = os.path.commonprefix(keys)  # noqa: RUF071 - an S3 prefix, not a path
            requested = request_and_wait(
                inventory, work_root, cold_bucket, prefix, plan, flow="restore-plates"
            )
            log.info("tarballs: %s", requested)
        finally:
            shutil.rmtree(work_root, ignore_errors=True)
        todo = [w.plate for w in works if w.plate.plate_id in located]
        futures = submit_bounded(
            restore_tasks.restore_plate,
            todo,
            max_parallel_plates,
            settings=settings,
            bundles=chosen,
            located=located,
            streaming=streaming,
        )
        for plate, row in zip(
            todo,
            rows_of(
                futures,
                todo,
                lambda p, reason: plate_restore.RestoredPlate(
                    p.plate_id, "", ItemStatus.FAILED, message=reason
                ).as_dict(),
            ),
            strict=True,
        ):
            rows[plate.plate_id] = row

    results = [rows[p.plate_id] for p in plates]
    create_table_artifact(
        key="restore-plates",
        table=[
            {
                k: r[k]
                for k in (
                    "plate_id",
                    "status",
                    "files",
                    "uploaded",
                    "skipped",
                    "verified",
                    "message",
                )
            }
            for r in results
        ],
        description="Per-plate restore summary",
    )
    raise_if_failed(results, {"restored"}, "restored")
    return results
