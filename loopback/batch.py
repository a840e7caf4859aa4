"""S3 Batch Operations restore jobs for the loopback endpoint (moto has none).

A stand-in for ``CreateJob``, ``DescribeJob``, ``ListJobs`` and ``UpdateJobStatus`` of
``S3InitiateRestoreObject`` jobs, as the real service behaves:

- ``CreateJob`` checks the manifest (CSV ``Bucket,Key``, keys URL-encoded) against the ETag it
  was given, and answers the same job id for a ``ClientRequestToken`` it has seen;
- a job goes New → Preparing → Active (→ Suspended first with ``ConfirmationRequired``) and
  sends one restore per manifest row through the endpoint's own restore logic
  (:meth:`loopback.tiers.ArchiveTiers.restore`), so the tiers' durations apply; it is
  ``Complete`` when the requests are sent, not when the objects are readable;
- ``ProgressSummary`` counts tasks as they run; ``task_seconds`` slows a job down so that
  progress can be watched;
- at the end it writes the completion report in AWS's format (``job-<id>/manifest.json`` and
  result CSVs under the report prefix);
- ``fail_keys`` makes matching tasks fail with a code, :meth:`BatchJobs.fail_next` fails the
  next job outright, and ``UpdateJobStatus`` cancels an active job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from loopback.restxml import arn_bucket, control_error, ok, parse_xml, stamp, to_xml

ACCOUNT_ID = "123456789012"
TERMINAL = ("Complete", "Failed", "Cancelled")
TIERS = {"BULK": "Bulk", "STANDARD": "Standard"}


@dataclass
class Job:
    """One Batch Operations job and its progress."""

    id: str
    request: dict
    status: str = "New"
    created: float = field(default_factory=time.time)
    terminated: float | None = None
    active_since: float | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    reason: str = ""
    failures: list[dict] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    confirmed: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict:
        req = self.request
        elapsed = (
            0 if self.active_since is None else (self.terminated or time.time()) - self.active_since
        )
        return {
            "JobId": self.id,
            "ConfirmationRequired": req.get("ConfirmationRequired", "false") == "true",
            "Description": req.get("Description"),
            "JobArn": f"arn:aws:s3:us-east-1:{ACCOUNT_ID}:job/{self.id}",
            "Status": self.status,
            "Manifest": req.get("Manifest"),
            "Operation": req.get("Operation"),
            "Priority": req.get("Priority", "0"),
            "ProgressSummary": self.progress(elapsed),
            "StatusUpdateReason": self.reason or None,
            "FailureReasons": self.failures or None,
            "Report": req.get("Report"),
            "CreationTime": stamp(self.created),
            "TerminationDate": stamp(self.terminated),
            "RoleArn": req.get("RoleArn"),
        }

    def progress(self, elapsed: float) -> dict:
        return {
            "TotalNumberOfTasks": self.total,
            "NumberOfTasksSucceeded": self.succeeded,
            "NumberOfTasksFailed": self.failed,
            "Timers": {"ElapsedTimeInActiveSeconds": int(elapsed)},
        }

    def listed(self) -> dict:
        d = self.describe()
        return {
            "JobId": d["JobId"],
            "Description": d["Description"],
            "Operation": "S3InitiateRestoreObject",
            "Priority": d["Priority"],
            "Status": d["Status"],
            "CreationTime": d["CreationTime"],
            "TerminationDate": d["TerminationDate"],
            "ProgressSummary": d["ProgressSummary"],
        }


class BatchJobs:
    """The Batch Operations jobs of one endpoint; restores go through ``tiers``."""

    def __init__(self, tiers: Any) -> None:
        self.tiers = tiers
        self.task_seconds = 0.0  # how long each task takes (to watch progress move)
        self.fail_keys: list[tuple[re.Pattern, str, str]] = []
        self.created: list[str] = []  # job ids in creation order (tokens reused excluded)
        self._fail_next: list[str] = []
        self._jobs: dict[str, Job] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel.set()
            job.confirmed.set()
        with self._lock:
            self.task_seconds = 0.0
            self.fail_keys.clear()
            self.created.clear()
            self._fail_next.clear()
            self._jobs.clear()
            self._tokens.clear()

    def fail_tasks(
        self, key_pattern: str, code: str = "AccessDenied", message: str = "Access Denied"
    ) -> None:
        """Tasks for keys matching ``key_pattern`` fail with ``code``."""
        self.fail_keys.append((re.compile(key_pattern), code, message))

    def fail_next(self, reason: str = "Reading the manifest failed") -> None:
        """The next job created fails outright with ``reason``."""
        self._fail_next.append(reason)

    def job(self, job_id: str) -> Job:
        return self._jobs[job_id]

    def wait(self, job_id: str, timeout: float = 60.0) -> str:
        """Block until a job is terminal (tests); return its status."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self._jobs[job_id].status
            if status in TERMINAL:
                return status
            time.sleep(0.02)
        raise TimeoutError(job_id)

    # -- the WSGI side -------------------------------------------------------------------

    def handle(self, environ: dict, start_response: Callable, s3_app: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        statuses = parse_qs(environ.get("QUERY_STRING", "")).get("jobStatuses", [])
        parts = path.strip("/").split("/")[1:]  # after v20180820
        if environ.get("HTTP_X_AMZ_ACCOUNT_ID") != ACCOUNT_ID:
            return control_error(
                start_response, "403 Forbidden", "AccessDenied", "Unknown account id"
            )
        if parts == ["jobs"] and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            return self._create(parse_xml(ET.fromstring(body)), start_response)
        if parts == ["jobs"] and method == "GET":
            return self._list(statuses, query, start_response)
        if len(parts) == 2 and parts[0] == "jobs" and method == "GET":
            job = self._jobs.get(parts[1])
            if job is None:
                return control_error(
                    start_response, "404 Not Found", "NoSuchJob", "The specified job does not exist"
                )
            return ok(start_response, to_xml("DescribeJobResult", {"Job": job.describe()}))
        if len(parts) == 3 and parts[2] == "status" and method == "POST":
            return self._update(parts[1], query, start_response)
        return control_error(
            start_response, "400 Bad Request", "InvalidRequest", f"unsupported: {method} {path}"
        )

    def _create(self, req: dict, start_response: Callable) -> Iterable[bytes]:
        token = req.get("ClientRequestToken", "")
        if not token or not req.get("RoleArn") or "Priority" not in req:
            return control_error(
                start_response, "400 Bad Request", "InvalidRequest", "missing a required field"
            )
        operation = req.get("Operation", {})
        if "S3InitiateRestoreObject" not in operation:
            return control_error(
                start_response,
                "400 Bad Request",
                "InvalidRequest",
                "only S3InitiateRestoreObject here",
            )
        tier = operation["S3InitiateRestoreObject"].get("GlacierJobTier", "BULK")
        if tier not in TIERS:
            return control_error(
                start_response, "400 Bad Request", "InvalidRequest", f"GlacierJobTier {tier}"
            )
        with self._lock:
            known = self._tokens.get(token)
            if known is None:
                job = Job(uuid.uuid4().hex[:8] + "-" + uuid.uuid4().hex[:4], req)
                self._jobs[job.id] = job
                self._tokens[token] = job.id
                self.created.append(job.id)
                fail = self._fail_next.pop(0) if self._fail_next else None
        if known is not None:
            return ok(start_response, to_xml("CreateJobResult", {"JobId": known}))
        if req.get("ConfirmationRequired", "false") != "true":
            job.confirmed.set()
        threading.Thread(target=self._run, args=(job, fail), daemon=True).start()
        return ok(start_response, to_xml("CreateJobResult", {"JobId": job.id}))

    def _list(self, statuses: list[str], query: dict, start_response: Callable) -> Iterable[bytes]:
        jobs = [j for j in self._jobs.values() if not statuses or j.status in statuses]
        start = int(query.get("nextToken") or 0)
        size = int(query.get("maxResults") or 1000)
        page = jobs[start : start + size]
        result: dict = {"Jobs": [j.listed() for j in page]}
        if start + size < len(jobs):
            result = {"NextToken": str(start + size), **result}
        return ok(start_response, to_xml("ListJobsResult", result))

    def _update(self, job_id: str, query: dict, start_response: Callable) -> Iterable[bytes]:
        job = self._jobs.get(job_id)
        if job is None:
            return control_error(
                start_response, "404 Not Found", "NoSuchJob", "The specified job does not exist"
            )
        wanted = query.get("requestedJobStatus", "")
        if wanted == "Cancelled" and job.status not in TERMINAL:
            job.reason = query.get("statusUpdateReason", "")
            job.status = "Cancelling"
            job.cancel.set()
            job.confirmed.set()
        elif wanted == "Ready" and job.status == "Suspended":
            job.confirmed.set()
        else:
            return control_error(
                start_response, "400 Bad Request", "JobStatusException", f"{job.status} → {wanted}"
            )
        result = {"JobId": job.id, "Status": job.status, "StatusUpdateReason": job.reason or None}
        return ok(start_response, to_xml("UpdateJobStatusResult", result))

    # -- running a job -------------------------------------------------------------------

    def _run(self, job: Job, fail: str | None) -> None:
        try:
            self._execute(job, fail)
        except Exception as exc:  # the job fails, as the service's would
            self._finish(
                job, "Failed", [{"FailureCode": "InternalError", "FailureReason": str(exc)}]
            )

    def _execute(self, job: Job, fail: str | None) -> None:
        from moto.s3.models import s3_backends

        backend = s3_backends[ACCOUNT_ID]["aws"]
        job.status = "Preparing"
        location = job.request["Manifest"]["Location"]
        bucket, _, key = location["ObjectArn"].split(":::", 1)[-1].partition("/")
        try:
            manifest = backend.get_object(bucket, key)
        except Exception:
            manifest = None
        if fail or manifest is None:
            reason = fail or f"Reading the manifest failed: s3://{bucket}/{key} not found"
            self._finish(
                job, "Failed", [{"FailureCode": "ManifestReadFailed", "FailureReason": reason}]
            )
            return
        if manifest.etag.strip('"') != location.get("ETag", "").strip('"'):
            self._finish(
                job,
                "Failed",
                [
                    {
                        "FailureCode": "ManifestETagMismatch",
                        "FailureReason": "The manifest ETag differs",
                    }
                ],
            )
            return
        rows = [r for r in csv.reader(io.StringIO(manifest.value.decode("utf-8"))) if r]
        job.total = len(rows)
        if not job.confirmed.is_set():
            job.status = "Suspended"
            job.confirmed.wait()
        if job.cancel.is_set():
            self._finish(job, "Cancelled")
            return
        job.status, job.active_since = "Active", time.time()
        restore = job.request["Operation"]["S3InitiateRestoreObject"]
        days = int(restore["ExpirationInDays"]) if restore.get("ExpirationInDays") else None
        tier = TIERS[restore.get("GlacierJobTier", "BULK")]
        results: list[tuple[str, str, str, str, int, str]] = []
        for row in rows:
            if job.cancel.is_set():
                break
            object_bucket, object_key = row[0], unquote(row[1])
            status, code, message = self._task(object_bucket, object_key, days, tier)
            ok = 200 <= status < 300
            if ok:
                job.succeeded += 1
            else:
                job.failed += 1
            results.append(
                (object_bucket, row[1], "succeeded" if ok else "failed", code, status, message)
            )
            if self.task_seconds:
                time.sleep(self.task_seconds)
        self._report(job, results, backend)
        self._finish(job, "Cancelled" if job.cancel.is_set() else "Complete")

    def _task(self, bucket: str, key: str, days: int | None, tier: str) -> tuple[int, str, str]:
        for pattern, code, message in self.fail_keys:
            if pattern.search(key):
                return 403, code, message
        return self.tiers.restore(bucket, key, days, tier)

    def _report(self, job: Job, results: list, backend: Any) -> None:
        report = job.request.get("Report") or {}
        if report.get("Enabled", "false") != "true":
            return
        bucket = arn_bucket(report["Bucket"])
        prefix = report.get("Prefix", "").strip("/")
        base = f"{prefix}/job-{job.id}" if prefix else f"job-{job.id}"
        scope = report.get("ReportScope", "AllTasks")
        files = []
        for outcome in ("succeeded", "failed"):
            if scope == "FailedTasksOnly" and outcome == "succeeded":
                continue
            rows = [r for r in results if r[2] == outcome]
            if not rows:
                continue
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            for b, k, _, code, status, message in rows:
                writer.writerow([b, k, "", outcome, code, status, message])
            body = out.getvalue().encode()
            key = f"{base}/results/{uuid.uuid4().hex}.csv"
            backend.put_object(bucket, key, body, disable_notification=True)
            files.append(
                {
                    "TaskExecutionStatus": outcome,
                    "Bucket": bucket,
                    "MD5Checksum": hashlib.md5(body).hexdigest(),
                    "Key": key,
                }
            )
        manifest = {
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": stamp(time.time()),
            "Results": files,
            "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, "
            "ResultMessage",
        }
        backend.put_object(
            bucket,
            f"{base}/manifest.json",
            json.dumps(manifest).encode(),
            disable_notification=True,
        )

    def _finish(self, job: Job, status: str, failures: list[dict] | None = None) -> None:
        from loopback import listing

        listing.invalidate()  # the report added keys
        job.failures = failures or []
        job.terminated = time.time()
        job.status = status
