"""Deleting verified source objects, in DeleteObjects batches, each pinned to its ETag."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from tasks.concurrency import bounded_map, retry_call
from tasks.listing import REPORT_SAMPLE, ObjectEntry
from tasks.s3 import DELETE_BATCH, is_transient


@dataclass
class DeleteReport:
    deleted: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def batches(items: Iterable[ObjectEntry], size: int) -> Iterator[list[ObjectEntry]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def delete_entries(
    client: Any,
    bucket: str,
    entries: Iterable[ObjectEntry],
    conditional: bool = True,
    workers: int = 4,
) -> DeleteReport:
    """Delete exactly these objects; with ``conditional`` each only if its ETag is unchanged.

    S3 refuses (per key, 412) a conditional delete of an object that changed
    since it was listed, so a write that lands after the last check is kept.
    Per-key refusals are counted and named; they never raise.
    """
    report = DeleteReport()

    def send(batch: list[ObjectEntry]) -> dict:
        objects = [
            {"Key": e.key, "ETag": f'"{e.etag}"'} if conditional and e.etag else {"Key": e.key}
            for e in batch
        ]
        return retry_call(
            lambda: client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
            ),
            is_transient,
        ) | {"_sent": len(batch)}

    for response in bounded_map(send, batches(entries, DELETE_BATCH), workers=workers):
        errors = response.get("Errors", [])
        report.deleted += response["_sent"] - len(errors)
        report.failed += len(errors)
        for err in errors[: max(0, REPORT_SAMPLE - len(report.failures))]:
            report.failures.append(f"{err.get('Key')}: {err.get('Code')} {err.get('Message', '')}")
    return report
