"""Batch Operations restore jobs: one deterministic request per manifest, and the sensor's
look at the jobs until their requests are sent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tasks.core.sensor import Look

#: Batch Operations offers these tiers only (no Expedited).
JOB_TIERS = {"Standard": "STANDARD", "Bulk": "BULK"}
TERMINAL = ("Complete", "Failed", "Cancelled")
#: What a job costs on top of the restores (us-east-1): per job and per million tasks.
PER_JOB_USD = 0.25
PER_MILLION_TASKS_USD = 1.00


def client_token(bucket: str, manifest_etag: str, tier: str, days: int) -> str:
    """The idempotency token of a job: the same request gives the same token, so a retried
    task or a re-run gets the job it already created instead of a second one."""
    seed = f"{bucket}\n{manifest_etag.strip(chr(34))}\n{tier}\n{days}"
    return hashlib.sha256(seed.encode()).hexdigest()[:64]


def default_role(account_id: str) -> str:
    """The IAM role Batch Operations assumes when the caller names none
    (docs/guides/bulk-restore.md)."""
    return f"arn:aws:iam::{account_id}:role/coldflow-batch-operations"


def job_request(
    *,
    account_id: str,
    bucket: str,
    manifest_bucket: str,
    manifest_key: str,
    manifest_etag: str,
    kind: str,
    tier: str,
    days: int,
    role_arn: str,
    report_bucket: str,
    report_prefix: str,
    description: str,
) -> dict[str, Any]:
    """The ``s3control.create_job`` parameters of one restore job."""
    restore: dict[str, Any] = {"GlacierJobTier": JOB_TIERS[tier]}
    if kind == "days":  # Intelligent-Tiering archive access tiers refuse ExpirationInDays
        restore = {"ExpirationInDays": days, **restore}
    return {
        "AccountId": account_id,
        "ConfirmationRequired": False,
        "Operation": {"S3InitiateRestoreObject": restore},
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {
                "ObjectArn": f"arn:aws:s3:::{manifest_bucket}/{manifest_key}",
                "ETag": manifest_etag.strip('"'),
            },
        },
        "Report": {
            "Bucket": f"arn:aws:s3:::{report_bucket}",
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": report_prefix,
            "ReportScope": "AllTasks",
        },
        "ClientRequestToken": client_token(bucket, manifest_etag, tier, days),
        "Description": description[:256],
        "Priority": 10,
        "RoleArn": role_arn,
    }


@dataclass
class JobState:
    """What ``describe_job`` said of one job."""

    job_id: str
    status: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    reason: str = ""
    report: dict = field(default_factory=dict)

    @classmethod
    def of(cls, job: dict) -> JobState:
        progress = job.get("ProgressSummary") or {}
        reasons = "; ".join(
            f"{r.get('FailureCode', '')}: {r.get('FailureReason', '')}"
            for r in job.get("FailureReasons") or ()
        )
        return cls(
            job["JobId"],
            job["Status"],
            int(progress.get("TotalNumberOfTasks", 0)),
            int(progress.get("NumberOfTasksSucceeded", 0)),
            int(progress.get("NumberOfTasksFailed", 0)),
            reasons or job.get("StatusUpdateReason", "") or "",
            job.get("Report") or {},
        )


class JobWatch:
    """The jobs a sensor waits for until each is Complete, Failed or Cancelled.

    A look describes every unfinished job once; ``sent`` is how many tasks (restore requests)
    all jobs have run so far, for the progress artifact."""

    def __init__(self, control: Any, account_id: str, job_ids: list[str], total: int) -> None:
        self.control, self.account_id = control, account_id
        self.states: dict[str, JobState] = {j: JobState(j, "New") for j in job_ids}
        self.total = total

    @property
    def sent(self) -> int:
        return sum(s.succeeded + s.failed for s in self.states.values())

    def describe(self, job_id: str) -> JobState:
        answer = self.control.describe_job(AccountId=self.account_id, JobId=job_id)
        return JobState.of(answer["Job"])

    def look(self) -> Look:
        finished: dict[str, int] = {}
        requests = 0
        for job_id, state in self.states.items():
            if state.status in TERMINAL:
                continue
            new = self.describe(job_id)
            requests += 1
            self.states[job_id] = new
            if new.status in TERMINAL:
                finished[new.status] = finished.get(new.status, 0) + 1
        pending = sum(1 for s in self.states.values() if s.status not in TERMINAL)
        return Look(
            finished=finished,
            pending=pending,
            requests=requests,
            problems=[f"job {s.job_id}: {s.reason}" for s in self.states.values() if s.reason],
        )
