"""Prefect tasks over the Batch Operations steps: named for the UI, retried where safe."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.batch import jobs as batch_jobs
from tasks.batch import manifest as manifests
from tasks.batch.report import ReportCounts, read_report
from tasks.core.clients import client, s3_client
from tasks.core.errors import RestoreTimeout
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.core.sensor import Backoff, wait_until_done
from tasks.core.status import ObjectStatus
from tasks.formats.ledger import LedgerWriter, merge_pending, unescape_key
from tasks.restore import inventory as steps
from tasks.restore.poll import PendingRestores


@dataclass(frozen=True)
class Uploaded:
    """A manifest in S3: what a job reads."""

    kind: str
    bucket: str
    key: str
    etag: str
    objects: int
    bytes: int


@task(name="bulk-inventory", task_run_name="bulk-inventory-{bucket}", **PLAIN, **TRANSIENT)
def take_inventory(
    bucket: str,
    prefix: str,
    manifest: str | None,
    workdir: str,
    credentials_block: str | None,
) -> steps.Inventory:
    """Classify every object of the request: list the prefix, read the user's CSV manifest
    (HEAD per key) or an S3 Inventory ``manifest.json`` (no request per key)."""
    s3 = s3_client(credentials_block)
    work = Path(workdir)
    if manifest is None:
        return steps.take_inventory(s3, bucket, prefix, work, batch_size=10_000)
    if manifest.endswith(".json"):
        return manifests.inventory_of_s3_inventory(s3, bucket, manifest, work, 10_000)
    keys = manifests.manifest_keys(manifest, bucket, s3)
    return manifests.inventory_of_manifest(s3, bucket, keys, work, 10_000)


@task(name="upload-manifests", **PLAIN, **TRANSIENT)
def upload_manifests(
    bucket: str,
    inventory: steps.Inventory,
    workdir: str,
    manifest_bucket: str,
    folder: str,
    credentials_block: str | None,
) -> list[Uploaded]:
    """One Batch Operations manifest per kind of restore, uploaded with its ETag recorded."""
    s3 = s3_client(credentials_block)
    uploaded = []
    for m in manifests.write_manifests(bucket, inventory, Path(workdir)):
        key = manifests.manifest_key(folder, m)
        s3.upload_file(m.path, manifest_bucket, key)  # small: one part, ETag = MD5 of content
        etag = s3.head_object(Bucket=manifest_bucket, Key=key)["ETag"].strip('"')
        uploaded.append(Uploaded(m.kind, manifest_bucket, key, etag, m.objects, m.bytes))
    return uploaded


def _record_key(folder: str) -> str:
    return f"{folder}/jobs.json"


def _read_record(s3, manifest_bucket: str, folder: str) -> dict:
    try:
        body = s3.get_object(Bucket=manifest_bucket, Key=_record_key(folder))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {}
    return json.loads(body)


def _write_record(s3, manifest_bucket: str, folder: str, record: dict) -> None:
    s3.put_object(
        Bucket=manifest_bucket,
        Key=_record_key(folder),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
    )


@task(name="recorded-jobs", **PLAIN, **TRANSIENT)
def recorded_jobs(manifest_bucket: str, folder: str, credentials_block: str | None) -> list[str]:
    """The job ids earlier runs of the same request created. A run that died between sending
    a job request and recording its answer left the request recorded: it is sent again, and
    its token makes S3 answer with the job it already created."""
    s3 = s3_client(credentials_block)
    record = _read_record(s3, manifest_bucket, folder)
    jobs = list(record.get("jobs", []))
    unanswered = record.get("requests", [])
    if unanswered:
        control = client("s3control", credentials_block)
        jobs += [control.create_job(**request)["JobId"] for request in unanswered]
        jobs = list(dict.fromkeys(jobs))
        _write_record(s3, manifest_bucket, folder, {"jobs": jobs})
    return jobs


@task(name="running-jobs", **PLAIN, **TRANSIENT)
def running_jobs(job_ids: list[str], account_id: str, credentials_block: str | None) -> list[str]:
    """Those of ``job_ids`` that have not ended yet (their restores are still being sent)."""
    control = client("s3control", credentials_block)
    watch = batch_jobs.JobWatch(control, account_id, job_ids, 0)
    return [j for j in job_ids if watch.describe(j).status not in batch_jobs.TERMINAL]


@task(name="start-jobs", **PLAIN, **TRANSIENT)
def start_jobs(
    uploaded: list[Uploaded],
    bucket: str,
    tier: str,
    days: int,
    account_id: str,
    role_arn: str,
    report_bucket: str,
    folder: str,
    earlier: list[str],
    credentials_block: str | None,
) -> list[str]:
    """One restore job per manifest; the same manifest, tier and days give the same job (its
    request token), so retries and re-runs never start a second one. Each request is recorded
    before it is sent and its job id once S3 answers, next to the ``earlier`` runs' jobs
    (see :func:`recorded_jobs`)."""
    if not uploaded:
        return []
    control = client("s3control", credentials_block)
    s3 = s3_client(credentials_block)
    home = uploaded[0].bucket
    requests = [
        batch_jobs.job_request(
            account_id=account_id,
            bucket=bucket,
            manifest_bucket=m.bucket,
            manifest_key=m.key,
            manifest_etag=m.etag,
            kind=m.kind,
            tier=tier,
            days=days,
            role_arn=role_arn,
            report_bucket=report_bucket,
            report_prefix=f"{folder}/reports",
            description=f"coldflow bulk-restore s3://{bucket} {m.kind} {m.objects} objects",
        )
        for m in uploaded
    ]
    _write_record(s3, home, folder, {"jobs": earlier, "requests": requests})
    started = [control.create_job(**request)["JobId"] for request in requests]
    _write_record(s3, home, folder, {"jobs": list(dict.fromkeys(earlier + started))})
    return started


@task(name="wait-for-jobs", **PLAIN)
def wait_for_jobs(
    job_ids: list[str], account_id: str, total: int, backoff: Backoff, credentials_block: str | None
) -> list[batch_jobs.JobState]:
    """Phase one: hold until every job has sent its requests (or failed, or was cancelled)."""
    watch = batch_jobs.JobWatch(client("s3control", credentials_block), account_id, job_ids, total)
    wait_until_done(
        watch.look,
        total=len(job_ids),
        pending=len(job_ids),
        backoff=backoff,
        statuses=batch_jobs.TERMINAL,
        pending_status="running",
        noun="Batch Operations jobs",
        error=RestoreTimeout,
    )
    return list(watch.states.values())


@task(name="read-reports", **PLAIN, **TRANSIENT)
def read_reports(
    job_ids: list[str], account_id: str, workdir: str, credentials_block: str | None
) -> tuple[ReportCounts, str]:
    """Every task of the jobs' completion reports: sent requests become the pending list,
    failed tasks ledger rows with their reasons. Returns the counts and the pending file."""
    control = client("s3control", credentials_block)
    s3 = s3_client(credentials_block)
    work = Path(workdir)
    total = ReportCounts()
    ledger = LedgerWriter(work / "ledger-report.csv")
    with open(work / "pending-report.txt", "w", encoding="utf-8") as pending:
        for job_id in job_ids:
            job = control.describe_job(AccountId=account_id, JobId=job_id)["Job"]
            counts = read_report(s3, job, pending, ledger)
            total.sent += counts.sent
            total.failed += counts.failed
            total.already += counts.already
            total.files += counts.files
            total.reasons.update(counts.reasons)
    ledger.flush()
    out = work / "pending.txt"
    merge_pending([work / "pending-inventory.txt", work / "pending-report.txt"], out)
    return total, str(out)


@task(name="wait-for-objects", task_run_name="wait-for-objects-{bucket}/{prefix}", **PLAIN)
def wait_for_objects(
    bucket: str,
    prefix: str | None,
    pending: str,
    listed: int,
    total: int,
    backoff: Backoff,
    credentials_block: str | None,
) -> dict:
    """Phase two: hold until the objects themselves are readable (a job "completes" when its
    requests are sent). The progress artifact shows (restored + failed) / total."""
    if prefix is None:  # a manifest: list under what its pending keys share, if that is cheaper
        prefix = shared_prefix(Path(pending))
    watched = PendingRestores(s3_client(credentials_block), bucket, prefix, Path(pending), listed)
    waited = wait_until_done(
        watched.look,
        total=total,
        pending=watched.count,
        backoff=backoff,
        noun="restores",
        error=RestoreTimeout,
        artifact_key="bulk-restore-progress",
        description=f"Objects restored (or failed) of the bulk restore of s3://{bucket}/{prefix}",
    )
    return {
        "ready": waited.counts.get(ObjectStatus.READY, 0),
        "error": waited.counts.get(ObjectStatus.ERROR, 0),
        "requests": waited.requests,
    }


def shared_prefix(pending: Path) -> str:
    """The longest prefix every key of a sorted pending list shares."""
    with open(pending, encoding="utf-8") as f:
        first = last = f.readline().rstrip("\n")
        for line in f:
            last = line
    last = last.rstrip("\n")
    return os.path.commonprefix([unescape_key(first), unescape_key(last)])  # noqa: RUF071


def account_of(credentials_block: str | None) -> str:
    """The caller's account id (STS GetCallerIdentity)."""
    return client("sts", credentials_block).get_caller_identity()["Account"]
