"""Very large restores through S3 Batch Operations: one job sends the restore requests, then
the objects themselves are watched until readable, with a true percentage and one event.

    from flows.batch_restore import bulk_restore
    result = bulk_restore("imaging-cold", "imaging_analysis/2016_04_01_a549/", tier="Bulk")
    result["status"], result["percent"]          # "Complete", 100.0

Runbook: list (or read the manifest) → estimate (artifact) → manifests to S3 → one job per
kind of restore (deterministic token) → wait for the jobs → read their completion reports
(failures to the ledger) → wait for the objects → one ``coldflow.restore.*`` event.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import DEFAULT_SCRATCH, run_logger
from tasks.batch import jobs as batch_jobs
from tasks.batch import tasks as batch_tasks
from tasks.batch.manifest import kind_of, request_folder
from tasks.core.bucket_facts import RESTORES_CURRENT, announce_buckets
from tasks.core.clients import s3_client
from tasks.core.errors import InputError, RestoreTimeout
from tasks.core.events import emit_restore_event
from tasks.core.memory import limit_malloc_arenas
from tasks.core.s3 import check_bucket, split_s3_uri
from tasks.core.sensor import Backoff
from tasks.core.status import ObjectStatus
from tasks.formats.ledger import merge_ledgers
from tasks.restore.pricing import estimate


@flow(
    name="bulk-restore", task_runner=ThreadPoolTaskRunner(max_workers=4), validate_parameters=True
)
def bulk_restore(
    bucket: str,
    prefix: str = "",
    manifest: str | None = None,
    tier: Literal["Standard", "Bulk"] = "Bulk",
    days: Annotated[int, Field(ge=1, le=3650)] = 7,
    account_id: Annotated[str | None, Field(pattern=r"^\d{12}$")] = None,
    role_arn: str | None = None,
    report_bucket: str | None = None,
    wait: bool = True,
    dry_run: bool = False,
    poll_interval: Annotated[float, Field(gt=0)] = 300.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 60 * 3600.0,
    ledger_path: str | None = None,
    work_dir: str = DEFAULT_SCRATCH,
    aws_credentials_block: str | None = None,
) -> dict:
    """Restore millions of archived objects with S3 Batch Operations and wait until they are
    readable.

    GLACIER / DEEP_ARCHIVE objects go in one job (with ``days``), Intelligent-Tiering
    archive-tier objects in another (without); objects that need no restore are counted.
    A cost and time estimate is published before any job exists. A re-run with the same
    objects, tier and days finds the job it already created instead of starting another.
    When it ends the flow emits one ``coldflow.restore.<status>`` event.

    Args:
        bucket: Bucket holding the archived objects.
        prefix: Key prefix to restore ("" for the whole bucket); ignored with a manifest.
        manifest: A CSV of ``Bucket,Key`` rows (keys URL-encoded) or an S3 Inventory
            ``manifest.json``, local or s3://, instead of listing the prefix.
        tier: Retrieval tier; Batch Operations offers Standard and Bulk only.
        days: How long restored copies of GLACIER / DEEP_ARCHIVE objects stay readable.
        account_id: AWS account that runs the jobs (default: the caller's, from STS).
        role_arn: IAM role the jobs assume (default:
            arn:aws:iam::<account>:role/coldflow-batch-operations, see docs/guides/bulk-restore.md).
        report_bucket: Bucket for manifests and completion reports (default: ``bucket``).
        wait: Hold until the jobs have run and every object is readable.
        dry_run: List and estimate only; create no job.
        poll_interval: First wait between polls, seconds (doubles up to max_poll_interval).
        max_poll_interval: Longest wait between polls, seconds.
        timeout: Give up waiting (status Timeout) after this many seconds.
        ledger_path: Where to write the ledger CSV (key, storage_class, size, status, message).
        work_dir: Local folder for manifests, pending lists and the ledger.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        status (Complete, Failed, Cancelled, Timeout, or Requested when not waiting;
        Estimated for a dry run), jobs, total, restored, failed, percent, plus listed,
        not_archived, requested, estimated_cost and the ledger path.
    """
    log = run_logger()
    if manifest is not None and prefix:
        raise InputError("give either a prefix or a manifest, not both")
    if manifest is not None and manifest.startswith("s3://"):
        split_s3_uri(manifest)
    elif manifest is not None and not Path(manifest).is_file():
        raise InputError(f"manifest {manifest!r} is not a file")
    limit_malloc_arenas()  # flat memory with pages listed by two dozen threads
    s3 = s3_client(aws_credentials_block)
    check_bucket(s3, bucket)
    home = report_bucket or bucket
    if report_bucket:
        check_bucket(s3, report_bucket)
    announce_buckets(s3, [bucket, home], "bulk-restore", RESTORES_CURRENT)
    source = manifest or f"prefix:{prefix}"
    folder = request_folder(bucket, source, tier, days)
    work = Path(work_dir) / f"bulk-{bucket}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    backoff = Backoff(poll_interval, max_poll_interval, timeout)
    try:
        account = account_id
        earlier: list[str] = []
        running: list[str] = []
        if not dry_run:
            # Jobs an earlier run of this request started finish first: a new listing while
            # they still send requests would put the same objects in a second job.
            earlier = batch_tasks.recorded_jobs(home, folder, aws_credentials_block)
            if earlier:
                account = account or batch_tasks.account_of(aws_credentials_block)
                running = batch_tasks.running_jobs(earlier, account, aws_credentials_block)
            if running and wait:
                log.info("waiting for the jobs an earlier run started: %s", ", ".join(running))
                batch_tasks.wait_for_jobs(running, account, 0, backoff, aws_credentials_block)
                running = []
        inventory = batch_tasks.take_inventory(
            bucket, prefix, manifest, str(work), aws_credentials_block
        )
        if inventory.listed == 0:
            raise InputError(
                f"nothing to restore: no objects in {manifest or f's3://{bucket}/{prefix}'}"
            )
        counts = Counter(inventory.counts)
        to_request = sum(inventory.to_request.values())
        already = counts[ObjectStatus.RESTORED]
        total = to_request + counts[ObjectStatus.IN_PROGRESS] + already
        estimated = estimate(tier, inventory.to_request, inventory.to_request_bytes)
        kinds = len({kind_of(c) for c in inventory.to_request})
        fee = kinds * batch_jobs.PER_JOB_USD + to_request / 1e6 * batch_jobs.PER_MILLION_TASKS_USD
        create_markdown_artifact(
            key="bulk-restore-estimate",
            markdown=estimated.as_markdown()
            + f"\n\nBatch Operations: {kinds} job(s), {to_request:,} tasks: **${fee:,.2f}**.",
            description="Cost and time of the bulk restore, before any job",
        )
        result: dict = {
            "status": "Estimated",
            "jobs": [],
            "total": total,
            "restored": already,
            "failed": counts[ObjectStatus.ERROR],
            "percent": 0.0,
            "listed": inventory.listed,
            "not_archived": counts[ObjectStatus.NOT_ARCHIVED],
            "requested": 0,
            "estimated_cost": round(estimated.total_cost + fee, 2),
        }
        log.info(
            "%s: %d objects to restore (%d in progress, %d restored already), estimated $%.2f",
            manifest or f"s3://{bucket}/{prefix}",
            to_request,
            counts[ObjectStatus.IN_PROGRESS],
            already,
            result["estimated_cost"],
        )
        if dry_run:
            return _finish(result, work, ledger_path, bucket, prefix, emit=False)

        started: list[str] = []
        if running:
            log.warning(
                "not starting a job: the jobs an earlier run started are still sending requests"
                " (%s); run again once they ended, or with wait",
                ", ".join(running),
            )
        elif to_request:
            account = account or batch_tasks.account_of(aws_credentials_block)
            uploaded = batch_tasks.upload_manifests(
                bucket, inventory, str(work), home, folder, aws_credentials_block
            )
            started = batch_tasks.start_jobs(
                uploaded,
                bucket,
                tier,
                days,
                account,
                role_arn or batch_jobs.default_role(account),
                home,
                folder,
                earlier,
                aws_credentials_block,
            )
            log.info("Batch Operations jobs: %s", ", ".join(started))
        result["jobs"] = list(dict.fromkeys(earlier + started))
        result["requested"] = 0 if running else to_request
        if not wait:
            result["status"] = "Requested"
            return _finish(result, work, ledger_path, bucket, prefix)

        status = "Complete"
        report_counts = None
        pending = str(work / "pending-inventory.txt")
        try:
            if started:
                states = batch_tasks.wait_for_jobs(
                    started, account, to_request, backoff, aws_credentials_block
                )
                for state in states:
                    if state.status != "Complete":
                        log.error("job %s ended %s: %s", state.job_id, state.status, state.reason)
                ended = {s.status for s in states}
                status = next((s for s in ("Failed", "Cancelled") if s in ended), "Complete")
                report_counts, pending = batch_tasks.read_reports(
                    started, account, str(work), aws_credentials_block
                )
                result["failed"] += report_counts.failed
                unsent = (
                    to_request - report_counts.sent - report_counts.already - report_counts.failed
                )
                if status != "Complete":
                    result["failed"] += unsent  # never requested: the job failed or was cancelled
                for reason, n in report_counts.reasons.most_common(5):
                    log.warning("%d restore requests failed: %s", n, reason)
            if status == "Complete":
                seen = batch_tasks.wait_for_objects(
                    bucket,
                    prefix if manifest is None else None,
                    pending,
                    inventory.listed,
                    total,
                    backoff,
                    aws_credentials_block,
                )
                result["restored"] += seen["ready"]
                result["failed"] += seen["error"]
        except RestoreTimeout as exc:
            status = "Timeout"
            log.error("%s", exc)
            result["restored"] += int(exc.counts.get(ObjectStatus.READY, 0))
        result["status"] = status
        return _finish(result, work, ledger_path, bucket, prefix)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(
    result: dict, work: Path, ledger_path: str | None, bucket: str, prefix: str, emit: bool = True
) -> dict:
    """Percent, ledger, summary table and the one event; the result as returned."""
    total = result["total"]
    done = result["restored"] + result["failed"]
    result["percent"] = round(100.0 * done / total, 2) if total else 100.0
    ledger = Path(ledger_path) if ledger_path else work.parent / f"{work.name}-ledger.csv"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    merge_ledgers(
        [p for p in (work / "ledger-inventory.csv", work / "ledger-report.csv") if p.exists()],
        ledger,
    )
    result["ledger"] = str(ledger)
    create_table_artifact(
        key="bulk-restore",
        table=[{"field": k, "value": str(v)} for k, v in result.items()],
        description=f"Bulk restore of s3://{bucket}/{prefix}: {result['status']}",
    )
    if emit:
        emit_restore_event(
            "bulk-restore",
            result["status"],
            bucket,
            prefix,
            {k: result[k] for k in ("jobs", "total", "restored", "failed", "percent")},
        )
    log = run_logger()
    log.info(
        "bulk restore %s: %d of %d restored, %d failed (%.1f%%), jobs %s",
        result["status"],
        result["restored"],
        total,
        result["failed"],
        result["percent"],
        ", ".join(result["jobs"]) or "none",
    )
    return result
