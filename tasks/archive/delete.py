"""The gate and the delete: re-list the sources, then delete exactly the verified objects,
in DeleteObjects batches, each pinned to its ETag."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tasks.archive.listing import walk
from tasks.core.concurrency import bounded_map
from tasks.core.errors import SourceChangedError, s3_errors, sample
from tasks.core.s3 import DELETE_BATCH
from tasks.formats.listing import (
    REPORT_SAMPLE,
    ObjectEntry,
    compare_entries,
    is_placeholder,
    read_entries,
    sort_file,
    write_lines,
)
from tasks.plates.work import PlateWork


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
        with s3_errors(bucket):
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
            )
        return response | {"_sent": len(batch)}

    for response in bounded_map(send, batches(entries, DELETE_BATCH), workers=workers):
        errors = response.get("Errors", [])
        report.deleted += response["_sent"] - len(errors)
        report.failed += len(errors)
        for err in errors[: max(0, REPORT_SAMPLE - len(report.failures))]:
            report.failures.append(f"{err.get('Key')}: {err.get('Code')} {err.get('Message', '')}")
    return report


@dataclass
class DeleteOutcome:
    deleted: int
    vanished: int
    failed: int
    failures: list[str]


def gate_and_delete(work: PlateWork, recorded: Path) -> DeleteOutcome:
    """Re-list the sources and delete exactly the objects that match the recorded entries.

    Any object that changed or appeared since it was recorded stops the gate:
    nothing is deleted and SourceChangedError names the keys. Objects already
    gone are counted, not errors.
    """
    s = work.settings
    current = work.path("current.tsv")
    write_lines(current, (e.to_line() for _, e in walk(work) if not is_placeholder(e.key, e.size)))
    sort_file(current)
    verified = work.path("verified.tsv")
    with open(verified, "w", encoding="utf-8", newline="\n") as out:
        drift = compare_entries(
            read_entries(recorded),
            read_entries(current),
            on_verified=lambda e: out.write(e.to_line()),
        )
    if not drift.clean:
        raise SourceChangedError(
            f"{work.tag}: sources changed since they were archived, nothing deleted: "
            f"{drift.n_changed} changed ({sample(drift.changed)}), "
            f"{drift.n_appeared} appeared ({sample(drift.appeared)})",
            changed=drift.changed,
            appeared=drift.appeared,
            vanished=drift.vanished,
        )
    report = delete_entries(s.client, s.bucket, read_entries(verified), s.conditional_delete)
    return DeleteOutcome(report.deleted, drift.n_vanished, report.failed, report.failures)
