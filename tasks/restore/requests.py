"""Restore requests: the right RestoreRequest per archive class, sent and classified.

The client sends each request once (no botocore retries) so that every answer is seen
here: throttling and 5xx are tried again (:data:`RESTORE_ATTEMPTS`), Expedited without
capacity falls back to Standard at once, ``RestoreAlreadyInProgress`` is progress, and
anything else is a ledger row, never an aborted run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.concurrency import bounded_map
from tasks.core.errors import error_code
from tasks.core.retry import RESTORE_ATTEMPTS, THROTTLING_CODES, is_transient, retry_call
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
    #: Requests sent for this object, and how many of them S3 answered SlowDown.
    sent: int = 0
    throttled: int = 0


def request_one(
    client: Any,
    bucket: str,
    c: Candidate,
    tier: str,
    days: int,
    fallback: bool = True,
    gate: Callable[[], None] | None = None,
) -> Outcome:
    """Request one restore. Never raises for S3's answers: they become the outcome.
    ``gate`` is called before every request sent (the run's rate caps)."""

    tally = [0, 0]  # sent, throttled

    def once(t: str) -> dict:
        if gate is not None:
            gate()
        tally[0] += 1
        try:
            return client.restore_object(
                Bucket=bucket, Key=c.key, RestoreRequest=restore_request(c.archive_class, t, days)
            )
        except ClientError as exc:
            tally[1] += error_code(exc) in THROTTLING_CODES
            raise

    def send(t: str) -> dict:
        return retry_call(
            lambda: once(t),
            is_transient,
            attempts=RESTORE_ATTEMPTS,
            first_delay=0.2,
            max_delay=5.0,
        )

    outcome = _classified(send, tier, fallback)
    outcome.sent, outcome.throttled = tally
    return outcome


def _classified(send: Callable[[str], dict], tier: str, fallback: bool) -> Outcome:
    """The outcome of ``send(tier)`` (then Standard if Expedited has no capacity)."""
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
    #: Requests sent, answers that were SlowDown, seconds the batch took.
    sent: int = 0
    throttled: int = 0
    seconds: float = 0.0


def request_batch(
    client: Any,
    bucket: str,
    batch: Iterable[Candidate],
    tier: str,
    days: int,
    workers: int = 64,
    fallback: bool = True,
    gate: Callable[[], None] | None = None,
) -> BatchOutcome:
    """Request restores for one batch of objects, at most ``workers`` at a time (the process's
    restore pace decides how many are in flight, ``gate`` how many a second). The batch and its
    outcome travel with the task (no files), so it runs on any worker."""
    counts: Counter = Counter()
    rows = []
    began = time.monotonic()
    sent = throttled = 0
    results = bounded_map(
        lambda c: (c, request_one(client, bucket, c, tier, days, fallback, gate)),
        batch,
        workers=workers,
    )
    for c, outcome in results:
        counts[outcome.status] += 1
        counts["fell_back"] += outcome.fell_back
        rows.append((c, outcome.status, outcome.message))
        sent += outcome.sent
        throttled += outcome.throttled
    return BatchOutcome(dict(counts), rows, sent, throttled, time.monotonic() - began)
