"""Restore requests: the right RestoreRequest per archive class, sent and classified.

The client sends each request once (no botocore retries) so that every answer is seen
here: throttling and 5xx are tried again (:data:`RESTORE_ATTEMPTS`), Expedited without
capacity falls back to Standard at once, ``RestoreAlreadyInProgress`` is progress, and
anything else is a ledger row, never an aborted run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.concurrency import bounded_map
from tasks.core.errors import error_code
from tasks.core.retry import RESTORE_ATTEMPTS, is_transient, retry_call
from tasks.core.status import ObjectStatus
from tasks.restore.inventory import Candidate
from tasks.restore.pricing import NEEDS_DAYS

IN_PROGRESS = ObjectStatus.IN_PROGRESS
REQUESTED = ObjectStatus.REQUESTED
RESTORED = ObjectStatus.RESTORED
ERROR = ObjectStatus.ERROR
#: Statuses every result reports, zero or not.
REPORTED = (ObjectStatus.NOT_ARCHIVED, RESTORED, IN_PROGRESS, REQUESTED, ERROR, "fell_back")


def restore_request(archive_class: str, tier: str, days: int) -> dict:
    """The RestoreRequest for one object: ``Days`` for GLACIER / DEEP_ARCHIVE only
    (Intelligent-Tiering archive tiers refuse it)."""
    request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
    if archive_class in NEEDS_DAYS:
        request["Days"] = days
    return request


@dataclass
class Outcome:
    status: str
    message: str = ""
    fell_back: bool = False


def request_one(
    client: Any, bucket: str, c: Candidate, tier: str, days: int, fallback: bool = True
) -> Outcome:
    """Request one restore. Never raises for S3's answers: they become the outcome."""

    def send(t: str) -> dict:
        return retry_call(
            lambda: client.restore_object(
                Bucket=bucket, Key=c.key, RestoreRequest=restore_request(c.archive_class, t, days)
            ),
            is_transient,
            attempts=RESTORE_ATTEMPTS,
            first_delay=0.2,
            max_delay=5.0,
        )

    try:
        try:
            response = send(tier)
            fell_back = False
        except ClientError as exc:
            if not (
                fallback
                and tier == "Expedited"
                and error_code(exc) == "GlacierExpeditedRetrievalNotAvailable"
            ):
                raise
            response = send("Standard")
            fell_back = True
    except ClientError as exc:
        code = error_code(exc)
        if code == "RestoreAlreadyInProgress":
            return Outcome(IN_PROGRESS, "restore already in progress")
        return Outcome(ERROR, f"{code or type(exc).__name__}: {exc}")
    except Exception as exc:  # connection errors after retries: record, never abort the run
        return Outcome(ERROR, f"{type(exc).__name__}: {exc}")
    status = RESTORED if response["ResponseMetadata"]["HTTPStatusCode"] == 200 else REQUESTED
    note = "Expedited unavailable, requested Standard" if fell_back else ""
    if status == RESTORED:
        note = "already restored; expiry extended" + (f" ({note})" if note else "")
    return Outcome(status, note, fell_back)


@dataclass
class BatchOutcome:
    """What one batch of requests came to: counts by status (plus ``fell_back``) and one
    (candidate, status, message) row per object, for the ledger and the pending list."""

    counts: dict[str, int]
    rows: list[tuple[Candidate, str, str]]


def request_batch(
    client: Any,
    bucket: str,
    batch: Iterable[Candidate],
    tier: str,
    days: int,
    workers: int = 16,
    fallback: bool = True,
) -> BatchOutcome:
    """Request restores for one batch of objects, ``workers`` at a time. The batch and its
    outcome travel with the task (no files), so it runs on any worker."""
    counts: Counter = Counter()
    rows = []
    results = bounded_map(
        lambda c: (c, request_one(client, bucket, c, tier, days, fallback)), batch, workers=workers
    )
    for c, outcome in results:
        counts[outcome.status] += 1
        counts["fell_back"] += outcome.fell_back
        rows.append((c, outcome.status, outcome.message))
    return BatchOutcome(dict(counts), rows)
