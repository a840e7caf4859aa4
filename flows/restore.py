"""Restore archived objects: a whole prefix in bulk (``restore_prefix``).

    from flows.restore import restore_prefix
    counts = restore_prefix("imaging-cold", "imaging_analysis/2016_04_01_a549/plates/",
                            tier="Bulk", days=7, filter_in=["BR00092655"])

list → classify → estimate (artifact) → request in batches → ledger → wait (sensor).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import run_logger, submit_bounded
from tasks import restore as steps
from tasks import restore_tasks
from tasks.errors import InputError
from tasks.restore_pricing import GB, estimate, tier_allowed
from tasks.s3 import check_bucket, s3_client

Tier = Literal["Standard", "Bulk", "Expedited"]
DEFAULT_WORK = os.environ.get("COLDFLOW_SCRATCH", os.path.join(tempfile.gettempdir(), "coldflow"))
#: Expedited above these needs allow_expensive=True.
EXPENSIVE_OBJECTS = 1000
EXPENSIVE_GB = 100.0


def _split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise InputError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


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
    batch_size: Annotated[int, Field(ge=100, le=10_000)] = 1000,
    parallel_batches: Annotated[int, Field(ge=1, le=8)] = 4,
    request_workers: Annotated[int, Field(ge=1, le=64)] = 16,
    poll_interval: Annotated[float, Field(gt=0)] = 60.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 60 * 3600.0,
    work_dir: str = DEFAULT_WORK,
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
        retry_ledger: A previous run's ledger (path or s3:// URI): retry only its errors.
        ledger_path: Where to write the ledger CSV (key, storage_class, size, status, message).
        ledger_s3_uri: Also upload the ledger to this s3:// URI.
        batch_size: Keys per request task (doubles every 200 batches).
        parallel_batches: Request tasks running at once.
        request_workers: Threads per request task.
        poll_interval: First wait between polls, seconds (doubles up to max_poll_interval).
        max_poll_interval: Longest wait between polls, seconds.
        timeout: Fail, with counts, if restores are still pending after this many seconds.
        work_dir: Local folder for batch files and the ledger.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Counts by status (not-archived, restored, in-progress, requested, error), fell_back,
        ready (seen readable by the sensor), the ledger path, requests made.
    """
    log = run_logger()
    if ledger_s3_uri:
        _split_s3_uri(ledger_s3_uri)
    client = s3_client(aws_credentials_block)
    check_bucket(client, bucket)
    work = Path(work_dir) / f"restore-{bucket}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"

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
    estimated = estimate(tier, inventory.to_request, inventory.to_request_bytes)
    create_markdown_artifact(
        key="restore-estimate",
        markdown=estimated.as_markdown(),
        description="Cost and time of the restore, before requesting",
    )
    log.info(
        "s3://%s/%s: %d objects to restore, estimated $%.2f (%s)",
        bucket,
        prefix,
        sum(inventory.to_request.values()),
        estimated.total_cost,
        tier,
    )
    try:
        _refuse_unwise_tier(
            tier, inventory, estimated.total_cost, allow_expensive, expensive_objects, expensive_gb
        )
    except InputError:
        shutil.rmtree(work, ignore_errors=True)
        raise

    counts: Counter = Counter(dict.fromkeys(steps.REPORTED, 0))
    counts.update(inventory.counts)
    counts.pop(steps.ARCHIVED, None)
    result: dict = {
        "listed": inventory.listed,
        "estimated_cost": round(estimated.total_cost, 2),
        "requests": inventory.listed // 1000 + 1 + inventory.heads,
    }
    if dry_run:
        counts[steps.ARCHIVED] = sum(inventory.to_request.values())
        shutil.rmtree(work, ignore_errors=True)
        return {**result, **counts}

    futures = submit_bounded(
        restore_tasks.request_restores,
        inventory.batches,
        parallel_batches,
        bucket=bucket,
        tier=tier,
        days=days,
        workers=request_workers,
        credentials_block=aws_credentials_block,
    )
    for future in futures:
        batch_counts = future.result()
        counts.update(batch_counts)
        result["requests"] += sum(v for k, v in batch_counts.items() if k != "fell_back")
    batches = [Path(b) for b in inventory.batches]

    ledger = Path(ledger_path) if ledger_path else work.parent / f"{work.name}-ledger.csv"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    steps.merge_ledgers(
        [work / "ledger-inventory.csv", *(b.with_suffix(".ledger.csv") for b in batches)], ledger
    )
    result["ledger"] = str(ledger)
    if ledger_s3_uri:
        ledger_bucket, ledger_key = _split_s3_uri(ledger_s3_uri)
        client.upload_file(str(ledger), ledger_bucket, ledger_key)
        result["ledger_s3_uri"] = ledger_s3_uri
    pending = work / "pending.txt"
    n_pending = steps.merge_pending(
        [work / "pending-inventory.txt", *(b.with_suffix(".pending.txt") for b in batches)], pending
    )
    _publish(counts, bucket, prefix, tier)
    log.info("requested: %s; %d pending", dict(counts), n_pending)

    if wait and n_pending:
        seen = restore_tasks.wait_for_restores(
            bucket,
            prefix,
            str(pending),
            inventory.listed,
            poll_interval,
            max_poll_interval,
            timeout,
            aws_credentials_block,
        )
        result["ready"] = seen["ready"]
        result["requests"] += seen["requests"]
        result["sensor_requests"] = seen["requests"]
        counts[steps.ERROR] += seen[steps.ERROR]
    else:
        result["ready"] = 0
    shutil.rmtree(work, ignore_errors=True)
    return {**result, **counts}


def _refuse_unwise_tier(
    tier: str,
    inventory: steps.Inventory,
    cost: float,
    allow_expensive: bool,
    max_objects: int,
    max_gb: float,
) -> None:
    """Refuse, before any request, a tier a class doesn't offer or an expensive Expedited."""
    refused = {c: n for c, n in inventory.to_request.items() if not tier_allowed(c, tier)}
    if refused:
        raise InputError(
            f"{tier} retrieval is not offered for "
            + ", ".join(f"{c} ({n} objects)" for c, n in refused.items())
            + "; use Standard or Bulk (or filter those objects out)"
        )
    n = sum(inventory.to_request.values())
    gb = sum(inventory.to_request_bytes.values()) / GB
    if tier == "Expedited" and not allow_expensive and (n > max_objects or gb > max_gb):
        raise InputError(
            f"Expedited on {n:,} objects ({gb:,.1f} GB) would cost about ${cost:,.2f}; "
            "pass allow_expensive=True to go ahead, or use Standard or Bulk"
        )


def _publish(counts: Counter, bucket: str, prefix: str, tier: str) -> None:
    create_table_artifact(
        key="restore-requests",
        table=[{"status": k, "objects": v} for k, v in sorted(counts.items())],
        description=f"Restore requests under s3://{bucket}/{prefix} ({tier})",
    )
