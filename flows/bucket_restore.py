"""Restore a backup bucket into a fresh one: list → leave out what is tagged deleted →
restore archived objects (estimate, requests, sensor) → copy with metadata and tags → verify.

    from flows.backup import restore_bucket
    restore_bucket("imaging-backup", "imaging-restored", create_target=True, tier="Bulk")
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import DEFAULT_SCRATCH, run_logger, stream_bounded
from flows.requests import request_and_wait
from tasks.backup import tasks as backup_tasks
from tasks.backup.diff import RESERVED, SortedKeys, check_prefix, listed, make_dir
from tasks.core.bucket_facts import announce_buckets
from tasks.core.clients import s3_client
from tasks.core.concurrency import batched
from tasks.core.errors import BackupFailedError, InputError
from tasks.core.memory import limit_malloc_arenas
from tasks.core.s3 import MIB, Tier, check_bucket
from tasks.core.sensor import Backoff
from tasks.formats.ledger import escape_key
from tasks.formats.listing import REPORT_SAMPLE, sort_file
from tasks.restore.inventory import take_inventory
from tasks.restore.plan import RequestPlan

#: Keys per task run.
BATCH = 1000


@flow(
    name="restore-bucket", task_runner=ThreadPoolTaskRunner(max_workers=8), validate_parameters=True
)
def restore_bucket(
    backup: str,
    target: str,
    prefix: str = "",
    create_target: bool = False,
    tier: Tier = "Standard",
    days: Annotated[int, Field(ge=1, le=3650)] = 7,
    wait: bool = True,
    allow_expensive: bool = False,
    max_requests_per_second: Annotated[float, Field(gt=0)] | None = None,
    parallel_batches: Annotated[int, Field(ge=1, le=16)] = 4,
    multipart_threshold_mib: Annotated[int, Field(ge=5, le=5120)] = 5120,
    poll_interval: Annotated[float, Field(gt=0)] = 60.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 60 * 3600.0,
    work_dir: str = DEFAULT_SCRATCH,
    aws_credentials_block: str | None = None,
) -> dict:
    """Restore every backup object not tagged deleted into a target bucket.

    Archived objects are restored first through the restore flow's machinery (estimate,
    requests with Days for GLACIER / DEEP_ARCHIVE, none for Intelligent-Tiering archive
    tiers, GLACIER_IR and the rest need none; the sensor waits). Each object is then copied
    with its metadata and tags (less the deletion tags), and its size and source ETag checked.

    Args:
        backup: The backup bucket.
        target: The bucket to restore into.
        prefix: Only keys under this prefix.
        create_target: Create the target bucket if it does not exist.
        tier: Retrieval tier for archived objects.
        days: How long restored copies of archived objects stay readable in the backup bucket.
        wait: Wait for restores and copy; False stops after requesting restores.
        allow_expensive: Allow Expedited above the restore flow's thresholds.
        max_requests_per_second: RestoreObject requests a second this run sends at most
            (see restore_prefix).
        parallel_batches: Batches of 1,000 keys worked on at once.
        multipart_threshold_mib: Objects above this are copied in parts.
        poll_interval: First wait between restore polls, seconds.
        max_poll_interval: Longest wait between polls, seconds.
        timeout: Fail, with counts, if restores are still pending after this many seconds.
        work_dir: Local folder for listings, batches and the restore ledger.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Counts: listed, copied, restored (restores requested), skipped_deleted, failed.
    """
    log = run_logger()
    check_prefix(prefix)
    limit_malloc_arenas()  # flat memory with pages listed by two dozen threads
    s3 = s3_client(aws_credentials_block)
    check_bucket(s3, backup)
    if create_target:
        try:
            check_bucket(s3, target)
        except InputError:
            s3.create_bucket(Bucket=target)
    check_bucket(s3, target)
    announce_buckets(
        s3,
        [backup, target],
        "restore-bucket",
        "the backup's current objects are restored, never a deleted one; each restored object "
        "becomes a new current version in the target",
    )
    work = Path(tempfile.mkdtemp(prefix="restore-bucket-", dir=make_dir(work_dir)))
    counts: Counter = Counter(
        dict.fromkeys(("listed", "copied", "restored", "skipped_deleted", "failed"), 0)
    )
    failures: list[str] = []
    try:
        deleted = work / "deleted.txt"
        with open(deleted, "w", encoding="utf-8") as out:
            keys = (o.key for o in listed(s3, backup, prefix))
            for _, future in stream_bounded(
                _Tags(backup, aws_credentials_block), batched(keys, BATCH), parallel_batches
            ):
                for key in future.result():
                    out.write(escape_key(key) + "\n")
        sort_file(deleted)
        with open(deleted, encoding="utf-8") as f:
            gone = SortedKeys(f)
            inventory = take_inventory(
                s3,
                backup,
                prefix,
                work / "inventory",
                keep_key=lambda k: not (k.startswith(RESERVED) or k in gone),
            )
        with open(deleted, encoding="utf-8") as f:
            counts["skipped_deleted"] = sum(1 for _ in f)
        counts["listed"] = inventory.listed
        plan = RequestPlan(
            tier,
            days,
            allow_expensive,
            parallel_batches=min(parallel_batches, 8),
            backoff=Backoff(poll_interval, max_poll_interval, timeout),
            credentials_block=aws_credentials_block,
            max_requests_per_second=max_requests_per_second,
        )
        requested = request_and_wait(inventory, work / "inventory", backup, prefix, plan, wait=wait)
        counts["restored"] = requested.get("requested", 0)
        counts["failed"] += requested.get("error", 0)
        if wait:
            with open(deleted, encoding="utf-8") as f:
                gone = SortedKeys(f)
                live = (o.as_entry() for o in listed(s3, backup, prefix) if o.key not in gone)
                for _, future in stream_bounded(
                    _Copies(backup, target, multipart_threshold_mib * MIB, aws_credentials_block),
                    batched(live, BATCH),
                    parallel_batches,
                ):
                    outcome = future.result()
                    counts["copied"] += outcome.get("copied", 0)
                    counts["failed"] += outcome.get("failed", 0)
                    failures.extend(outcome["failures"][: REPORT_SAMPLE - len(failures)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {**dict(counts), "failures": failures}
    create_table_artifact(
        key="restore-bucket",
        table=[{"count": k, "value": v} for k, v in counts.items()],
        description=f"Restore of s3://{backup}/{prefix} into s3://{target}",
    )
    log.info("restore of s3://%s/%s into %s: %s", backup, prefix, target, dict(counts))
    if counts["failed"]:
        raise BackupFailedError(
            f"{counts['failed']} objects not restored: " + "; ".join(failures[:5]), [result]
        )
    return result


class _Tags:
    def __init__(self, bucket: str, credentials_block: str | None) -> None:
        self.bucket, self.credentials_block = bucket, credentials_block

    def submit(self, keys: list[str]) -> Any:
        return backup_tasks.deleted_keys.submit(keys, self.bucket, self.credentials_block)


class _Copies:
    def __init__(self, backup: str, target: str, threshold: int, block: str | None) -> None:
        self.backup, self.target, self.threshold, self.block = backup, target, threshold, block

    def submit(self, entries: list[dict]) -> Any:
        return backup_tasks.restore_copy_batch.submit(
            entries, self.backup, self.target, self.threshold, self.block
        )
