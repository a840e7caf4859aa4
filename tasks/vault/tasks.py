"""Prefect tasks over the vault steps: one task per batch of archives, never per archive."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import task

from tasks.core.clients import client, s3_client
from tasks.core.concurrency import bounded_map
from tasks.core.errors import ColdflowError, describe
from tasks.core.log import run_logger
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.core.sensor import Backoff, wait_until_done
from tasks.core.status import ItemStatus
from tasks.vault.archives import ArchiveSpec
from tasks.vault.copy import JobOutputExpiredError, already_copied, copy_job_output
from tasks.vault.jobs import JobWatch, Started, start_inventory, start_job

#: Archives copied at once within a batch task.
ARCHIVES_IN_FLIGHT = 2


@dataclass
class ThawRow:
    """One archive's row in the summary table and the flow's result."""

    archive_id: str
    key: str
    status: str = ItemStatus.FAILED
    job_id: str = ""
    tier: str = ""
    bytes: int = 0
    tree_hash_ok: bool = False
    deleted: bool = False
    message: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        row = asdict(self)
        row.pop("extra")
        return row


class VaultJobFailedError(ColdflowError):
    """Glacier reported a retrieval job as failed."""


def glacier(credentials_block: str | None, retries: bool = True) -> Any:
    return client("glacier", credentials_block, retries)


@task(name="vault-inventory", task_run_name="inventory-{vault}", **PLAIN, **TRANSIENT)
def take_inventory(vault: str, backoff: Backoff, credentials_block: str | None) -> dict:
    """Run the vault's inventory-retrieval job, wait for it, and return the inventory."""
    g = glacier(credentials_block)
    job_id = start_inventory(g, vault)
    run_logger().info("%s: inventory job %s started", vault, job_id)
    watch = JobWatch(g, vault, {job_id})
    wait_until_done(watch.look, total=1, pending=1, backoff=backoff, noun="inventory jobs")
    if watch.failed:
        raise VaultJobFailedError(f"inventory of {vault}: {watch.failed[job_id]}")
    return json.loads(g.get_job_output(vaultName=vault, jobId=job_id)["body"].read())


@task(name="check-copies", task_run_name="check-copies-{vault}", **PLAIN, **TRANSIENT)
def find_copied(
    vault: str, bucket: str, specs: list[ArchiveSpec], credentials_block: str | None
) -> list[str]:
    """Archive ids whose target key already holds a verified copy (from an earlier run)."""
    s3 = s3_client(credentials_block)

    def check(spec: ArchiveSpec) -> tuple[str, bool]:
        done = already_copied(s3, bucket, spec.key, spec.archive_id, spec.tree_hash, spec.size)
        return spec.archive_id, done

    return [archive_id for archive_id, done in bounded_map(check, specs, workers=8) if done]


@task(name="start-jobs", task_run_name="start-jobs-{vault}", **PLAIN)
def start_jobs(
    vault: str,
    archive_ids: list[str],
    tier: str,
    running: dict[str, Started],
    credentials_block: str | None,
) -> dict[str, Started | str]:
    """Start one retrieval job per archive (reusing running ones); per-archive failures are
    returned as messages, not raised."""
    g = glacier(credentials_block, retries=False)
    started: dict[str, Started | str] = {}
    for archive_id in archive_ids:
        if archive_id in running:
            started[archive_id] = running[archive_id]
            continue
        try:
            started[archive_id] = start_job(g, vault, archive_id, tier)
        except Exception as exc:
            started[archive_id] = describe(exc)
    return started


@task(name="wait-for-jobs", task_run_name="wait-for-jobs-{vault}", **PLAIN)
def wait_for_jobs(
    vault: str, job_ids: list[str], backoff: Backoff, credentials_block: str | None
) -> dict[str, str]:
    """The sensor over retrieval jobs; returns the failed ones with Glacier's message."""
    watch = JobWatch(glacier(credentials_block), vault, set(job_ids))
    wait_until_done(
        watch.look,
        total=len(job_ids),
        pending=len(job_ids),
        backoff=backoff,
        noun="retrieval jobs",
        artifact_key="thaw-progress",
        description=f"Retrieval jobs finished in vault {vault}",
    )
    return watch.failed


@task(name="copy-archives", task_run_name="copy-archives-{vault}", **PLAIN)
def copy_archives(
    rows: list[ThawRow],
    vault: str,
    bucket: str,
    storage_class: str,
    credentials_block: str | None,
    smallest_chunk: int | None = None,
) -> list[ThawRow]:
    """Copy each archive's job output into S3, verified; a row per archive, never raised.
    An expired output is marked ``expired`` in the row for the flow to start a new job."""
    g, s3 = glacier(credentials_block), s3_client(credentials_block)
    log = run_logger()

    def one(row: ThawRow) -> ThawRow:
        t = time.monotonic()
        try:
            copied = copy_job_output(
                g,
                s3,
                vault,
                row.job_id,
                row.archive_id,
                bucket,
                row.key,
                storage_class,
                smallest_chunk=smallest_chunk,
            )
            row.bytes, row.tree_hash_ok = copied.bytes, True
            notes = [row.message] if row.message else []
            notes.append(f"copied in {copied.parts} part(s)")
            if copied.aborted_uploads:
                notes.append(f"aborted {copied.aborted_uploads} incomplete upload(s)")
            row.status, row.message = ItemStatus.THAWED, "; ".join(notes)
            row.extra.pop("expired", None)
        except JobOutputExpiredError as exc:
            row.extra["expired"] = True
            row.message = str(exc)
        except Exception as exc:
            row.status, row.message = ItemStatus.FAILED, describe(exc)
            log.error("%s: %s", row.archive_id, row.message)
        row.seconds = round(row.seconds + time.monotonic() - t, 2)
        return row

    return list(bounded_map(one, rows, workers=ARCHIVES_IN_FLIGHT))


@task(name="delete-archives", task_run_name="delete-archives-{vault}", **PLAIN)
def delete_archives(
    rows: list[ThawRow], vault: str, credentials_block: str | None
) -> list[ThawRow]:
    """Delete the vault archives of verified copies (and only those)."""
    g = glacier(credentials_block)
    for row in rows:
        if not (row.status in (ItemStatus.THAWED, ItemStatus.SKIPPED) and row.tree_hash_ok):
            continue
        try:
            g.delete_archive(vaultName=vault, archiveId=row.archive_id)
            row.deleted = True
        except Exception as exc:
            row.status = ItemStatus.FAILED
            row.message += f"; verified in S3 but the archive was not deleted: {describe(exc)}"
    return rows
