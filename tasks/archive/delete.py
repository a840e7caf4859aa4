"""The gate and the delete: re-list the sources, then delete exactly the verified objects,
in DeleteObjects batches, each pinned to its ETag.

On a versioned bucket the gate lists versions (ListObjectVersions) instead: the current
version of each key is what is compared with the record, and its VersionId is kept with it.
``versioned_delete="purge"`` then deletes exactly those versions by VersionId (permanent; a
version written after the gate is never touched; a version under Object Lock is refused per
key and kept); ``"delete-marker"`` deletes by key as on any bucket, which only places delete
markers (the versions stay billed, as noncurrent, until a lifecycle rule expires them).
Noncurrent versions that were there before are counted and never deleted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import ClientError

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

T = TypeVar("T")


@dataclass
class DeleteReport:
    deleted: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
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
    return delete_objects(
        client,
        bucket,
        (
            {"Key": e.key, "ETag": f'"{e.etag}"'} if conditional and e.etag else {"Key": e.key}
            for e in entries
        ),
        workers,
    )


def delete_objects(
    client: Any, bucket: str, objects: Iterable[dict], workers: int = 4
) -> DeleteReport:
    """DeleteObjects of these ``{"Key", "ETag" | "VersionId"}`` items, batch by batch, a few
    batches at once; per-key refusals (412, AccessDenied of a locked version) are counted and
    named, never raised."""
    report = DeleteReport()

    def send(batch: list[dict]) -> dict:
        with s3_errors(bucket):
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
            )
        return response | {"_sent": len(batch)}

    for response in bounded_map(send, batches(objects, DELETE_BATCH), workers=workers):
        errors = response.get("Errors", [])
        report.deleted += response["_sent"] - len(errors)
        report.failed += len(errors)
        for err in errors[: max(0, REPORT_SAMPLE - len(report.failures))]:
            said = f"{err.get('Key')}: {err.get('Code')} {err.get('Message', '')}".rstrip()
            if err.get("VersionId") and err.get("Code") == "AccessDenied":
                said += lock_of(client, bucket, err["Key"], err["VersionId"])
            report.failures.append(said)
    return report


def lock_of(client: Any, bucket: str, key: str, version_id: str) -> str:
    """What holds a version S3 refused to delete: " (COMPLIANCE until <date>, legal hold)",
    or "" when neither can be read (the refusal was for another reason, or the caller may
    not read locks). Only asked for the few refusals a row names."""
    held = []
    try:
        retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version_id)
        rule = retention.get("Retention", {})
        if rule.get("Mode"):
            until = rule.get("RetainUntilDate")
            when = until.isoformat() if hasattr(until, "isoformat") else str(until)
            held.append(f"{rule['Mode']} until {when}")
    except ClientError:
        pass
    try:
        hold = client.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version_id)
        if hold.get("LegalHold", {}).get("Status") == "ON":
            held.append("legal hold")
    except ClientError:
        pass
    return f" ({', '.join(held)})" if held else ""


@dataclass
class DeleteOutcome:
    deleted: int
    vanished: int
    failed: int
    failures: list[str]
    versioned: bool = False  # the live bucket keeps versions
    markers: bool = False  # deleted by key on a versioned bucket: delete markers placed
    deleted_bytes: int = 0
    noncurrent: int = 0  # older versions of the plate's keys, there before; never deleted
    noncurrent_bytes: int = 0


@dataclass
class _Versions:
    noncurrent: int = 0
    noncurrent_bytes: int = 0


def walk_versions(work: PlateWork, ids: Path, seen: _Versions) -> Iterator[ObjectEntry]:
    """The current version of every key under the plate's prefixes (ListObjectVersions), with
    ``key<TAB>VersionId`` lines written to ``ids``; noncurrent versions counted in ``seen``."""
    client, bucket = work.settings.client, work.settings.bucket
    paginator = client.get_paginator("list_object_versions")
    with open(ids, "w", encoding="utf-8", newline="\n") as out:
        for prefixes in work.where.bundles.values():
            for prefix in prefixes:
                with s3_errors(bucket):
                    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                        for v in page.get("Versions", []):
                            if not v["IsLatest"]:
                                seen.noncurrent += 1
                                seen.noncurrent_bytes += int(v["Size"])
                                continue
                            out.write(f"{v['Key']}\t{v['VersionId']}\n")
                            yield ObjectEntry.from_s3(v)


def _with_version_ids(entries: Iterator[ObjectEntry], ids: Path) -> Iterator[dict]:
    """``{"Key", "VersionId"}`` of each entry, from the sorted ``key<TAB>VersionId`` file."""
    with open(ids, encoding="utf-8", newline="\n") as f:
        pairs = (line.rstrip("\n").split("\t") for line in f)
        pair = next(pairs, None)
        for e in entries:
            while pair is not None and pair[0] < e.key:
                pair = next(pairs, None)
            if pair is None or pair[0] != e.key:
                raise SourceChangedError(f"{e.key}: no current version found; nothing deleted")
            yield {"Key": e.key, "VersionId": pair[1]}


def gate_and_delete(work: PlateWork, recorded: Path) -> DeleteOutcome:
    """Re-list the sources and delete exactly the objects that match the recorded entries.

    Any object that changed or appeared since it was recorded stops the gate:
    nothing is deleted and SourceChangedError names the keys. Objects already
    gone are counted, not errors.
    """
    s = work.settings
    versioned = s.versioned_delete is not None and s.bucket_versioning is not None
    seen, ids = _Versions(), work.path("current_versions.tsv")
    listed = walk_versions(work, ids, seen) if versioned else (e for _, e in walk(work))
    current = work.path("current.tsv")
    write_lines(current, (e.to_line() for e in listed if not is_placeholder(e.key, e.size)))
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
    nbytes = sum(e.size for e in read_entries(verified))
    if versioned and s.versioned_delete == "purge":
        sort_file(ids)
        objects = _with_version_ids(read_entries(verified), ids)
        report = delete_objects(s.client, s.bucket, objects)
    else:
        report = delete_entries(s.client, s.bucket, read_entries(verified), s.conditional_delete)
    return DeleteOutcome(
        report.deleted,
        drift.n_vanished,
        report.failed,
        report.failures,
        versioned=versioned,
        markers=versioned and s.versioned_delete == "delete-marker",
        deleted_bytes=nbytes,
        noncurrent=seen.noncurrent,
        noncurrent_bytes=seen.noncurrent_bytes,
    )
