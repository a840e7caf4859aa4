"""Glacier retrieval jobs: the vault checked, jobs started (Expedited falling back to Standard
when capacity is short), running jobs reused, and a check the generic sensor calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.errors import InputError, error_code
from tasks.core.retry import RESTORE_ATTEMPTS, is_transient, retry_call
from tasks.core.sensor import Look

#: How long Glacier keeps a finished job's output downloadable.
OUTPUT_WINDOW = timedelta(hours=24)
#: Room left before the window closes for a reused job to still be worth reusing.
REUSE_MARGIN = timedelta(hours=2)
CAPACITY_CODES = frozenset({"InsufficientCapacityException"})
EXPIRED_CODES = frozenset({"ResourceNotFoundException"})


def check_vault(glacier: Any, vault: str) -> dict:
    """The vault's description (archive count, size); InputError when it doesn't exist."""
    try:
        return glacier.describe_vault(vaultName=vault)
    except ClientError as exc:
        if error_code(exc) in {"ResourceNotFoundException", "VaultNotFound"}:
            raise InputError(f"vault {vault!r} does not exist (or is not in this region)") from exc
        raise


@dataclass
class Started:
    """A job for one archive: its id, the tier it runs at and whether it was reused."""

    job_id: str
    tier: str
    reused: bool = False
    fell_back: bool = False
    tree_hash: str | None = None  # the archive's, as the job reports it


def _parse(date: str | None) -> datetime | None:
    if not date:
        return None
    return datetime.strptime(date[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def running_jobs(glacier: Any, vault: str, now: datetime | None = None) -> dict[str, Started]:
    """Archive retrieval jobs already under way (or done, output still downloadable for a
    while) per archive id, so a re-run never doubles a job."""
    now = now or datetime.now(UTC)
    found: dict[str, Started] = {}
    for page in glacier.get_paginator("list_jobs").paginate(vaultName=vault):
        for job in page.get("JobList", []):
            if job.get("Action") != "ArchiveRetrieval" or job.get("StatusCode") == "Failed":
                continue
            done = _parse(job.get("CompletionDate"))
            if done is not None and now > done + OUTPUT_WINDOW - REUSE_MARGIN:
                continue
            found[job["ArchiveId"]] = Started(
                job["JobId"],
                job.get("Tier", "Standard"),
                reused=True,
                tree_hash=job.get("ArchiveSHA256TreeHash"),
            )
    return found


def start_job(glacier: Any, vault: str, archive_id: str, tier: str) -> Started:
    """Start an archive retrieval; Expedited falls back to Standard at once when Glacier has
    no capacity. ``glacier`` must send each request once (no botocore retries), so that
    the capacity answer (a 503) is not retried before the fallback."""

    def send(t: str) -> str:
        return retry_call(
            lambda: glacier.initiate_job(
                vaultName=vault,
                jobParameters={"Type": "archive-retrieval", "ArchiveId": archive_id, "Tier": t},
            )["jobId"],
            is_transient,
            attempts=RESTORE_ATTEMPTS,
            first_delay=0.2,
            max_delay=5.0,
        )

    try:
        return Started(send(tier), tier)
    except ClientError as exc:
        if tier != "Expedited" or error_code(exc) not in CAPACITY_CODES:
            raise
    return Started(send("Standard"), "Standard", fell_back=True)


def start_inventory(glacier: Any, vault: str) -> str:
    """Start an inventory retrieval (the list of the vault's archives)."""
    return glacier.initiate_job(vaultName=vault, jobParameters={"Type": "inventory-retrieval"})[
        "jobId"
    ]


@dataclass
class JobWatch:
    """The jobs a sensor waits for; :meth:`look` describes each pending one once."""

    glacier: Any
    vault: str
    pending: set[str]
    failed: dict[str, str] = field(default_factory=dict)

    def look(self) -> Look:
        done = errors = 0
        problems: list[str] = []
        for job_id in sorted(self.pending):
            job = self.glacier.describe_job(vaultName=self.vault, jobId=job_id)
            status = job.get("StatusCode")
            if status == "Succeeded":
                done += 1
                self.pending.discard(job_id)
            elif status == "Failed":
                errors += 1
                self.pending.discard(job_id)
                self.failed[job_id] = job.get("StatusMessage") or "job failed"
                problems.append(f"job {job_id}: {self.failed[job_id]}")
        return Look(
            finished={"ready": done, "error": errors},
            pending=len(self.pending),
            requests=done + errors + len(self.pending),
            problems=problems,
        )
