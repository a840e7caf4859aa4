"""Completion reports of restore jobs: which requests were sent, which failed and why."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from tasks.batch.manifest import decode_key, read_rows
from tasks.core.status import ObjectStatus
from tasks.formats.ledger import LedgerWriter, escape_key
from tasks.restore.inventory import Candidate

#: A failed task whose object is being restored anyway: it counts as pending, not failed.
STILL_RESTORING = frozenset({"RestoreAlreadyInProgress"})


@dataclass
class ReportCounts:
    """What the completion reports of a request's jobs said."""

    sent: int = 0
    failed: int = 0
    already: int = 0
    reasons: Counter = field(default_factory=Counter)
    files: int = 0


def report_files(client: Any, job: dict) -> list[tuple[str, str]]:
    """(bucket, key) of a finished job's result CSVs, from its report's ``manifest.json``."""
    report = job.get("Report") or {}
    if not report.get("Enabled"):
        return []
    bucket = report["Bucket"].split(":::")[-1]
    prefix = (report.get("Prefix") or "").strip("/")
    base = f"{prefix}/job-{job['JobId']}" if prefix else f"job-{job['JobId']}"
    try:
        body = client.get_object(Bucket=bucket, Key=f"{base}/manifest.json")["Body"].read()
    except client.exceptions.NoSuchKey:
        return []
    return [(r["Bucket"], r["Key"]) for r in json.loads(body).get("Results", [])]


def read_report(
    client: Any,
    job: dict,
    pending: TextIO,
    ledger: LedgerWriter,
) -> ReportCounts:
    """Sort every task of a job's report: sent requests (and restores already under way) go
    to ``pending``, failed tasks to the ledger with their reasons."""
    counts = ReportCounts()
    for bucket, key in report_files(client, job):
        counts.files += 1
        for row in read_rows(f"s3://{bucket}/{key}", client):
            row = row + [""] * (7 - len(row))
            object_key = decode_key(row[1])
            status, code, http, message = row[3], row[4], row[5], row[6]
            task = Candidate(object_key, 0, "")
            if status == "succeeded":
                counts.sent += 1
                pending.write(escape_key(object_key) + "\n")
                ledger.add(task, ObjectStatus.REQUESTED, f"job {job['JobId']}")
            elif code in STILL_RESTORING:
                counts.already += 1
                pending.write(escape_key(object_key) + "\n")
                ledger.add(task, ObjectStatus.IN_PROGRESS, f"job {job['JobId']}: {code}")
            else:
                counts.failed += 1
                counts.reasons[code or http or "failed"] += 1
                ledger.add(
                    task,
                    ObjectStatus.ERROR,
                    f"job {job['JobId']}: {code} ({http}) {message}".strip(),
                )
    return counts
