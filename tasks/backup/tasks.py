"""Prefect tasks over the backup steps: one task run per batch of keys (a list that travels
with the task, so a batch runs on any worker), never one per object."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import task

from tasks.backup.copy import (
    copy_object,
    is_deleted,
    recorded_source_etag,
    tag_deleted,
    untag_deleted,
)
from tasks.backup.diff import Change
from tasks.core.clients import s3_client
from tasks.core.concurrency import bounded_map
from tasks.core.errors import describe, s3_errors
from tasks.core.retry import PLAIN
from tasks.formats.listing import REPORT_SAMPLE

#: Objects handled at most at once within a batch task (the write pace decides how many
#: requests are in flight, tasks.core.pace).
WORKERS = 64


def _outcome(counts: Counter, failures: list[str], status: str, key: str, message: str) -> None:
    counts[status] += 1
    if status == "failed" and len(failures) < REPORT_SAMPLE:
        failures.append(f"{key}: {message}")


@task(name="copy-batch", task_run_name="copy-{source}-to-{backup}", **PLAIN)
def copy_batch(
    entries: list[dict[str, Any]],
    source: str,
    backup: str,
    storage_class: str,
    multipart_threshold: int,
    credentials_block: str | None,
    record_source: bool = False,
) -> dict[str, Any]:
    """Copy (or check, or untag) each entry; per-object failures are counted, never raised.
    ``record_source``: the backup bucket's copies get ETags of their own (KMS), so each copy
    records its source's ETag at once (see :func:`copy_object`).

    Returns counts (copied, unchanged, untagged, failed), bytes_copied, a sample of failures
    and the keys whose deletion tags were removed.
    """
    s3 = s3_client(credentials_block)
    counts: Counter = Counter()
    failures: list[str] = []
    untagged: list[str] = []

    def one(entry: dict[str, Any]) -> tuple[dict, str, int, str]:
        key, change = entry["key"], entry["change"]
        try:
            if change in (Change.CHECK, Change.REAPPEARED):
                with s3_errors(backup, key):
                    head = s3.head_object(Bucket=backup, Key=key)
                same = int(head["ContentLength"]) == entry["size"] and entry["etag"] in (
                    head["ETag"].strip('"'),
                    recorded_source_etag(head),
                )
                if same:
                    if change == Change.REAPPEARED and untag_deleted(s3, backup, key):
                        return entry, "untagged", 0, ""
                    return entry, "unchanged", 0, ""
            size = copy_object(
                s3,
                source,
                key,
                entry["etag"],
                backup,
                storage_class,
                multipart_threshold,
                size=entry["size"],
                record_source=record_source,
            )
            return entry, "copied", size, ""
        except Exception as exc:
            return entry, "failed", 0, describe(exc)

    for entry, status, size, message in bounded_map(one, entries, workers=WORKERS):
        _outcome(counts, failures, status, entry["key"], message)
        counts["bytes_copied"] += size
        if status == "untagged" or (status == "copied" and entry["change"] == Change.REAPPEARED):
            untagged.append(entry["key"])
    return {**counts, "failures": failures, "untagged_keys": untagged}


@task(name="tag-deleted", task_run_name="tag-deleted-{backup}", **PLAIN)
def tag_batch(keys: list[str], backup: str, credentials_block: str | None) -> dict[str, Any]:
    """Tag backup objects whose source is gone (their other tags kept); returns counts and
    the keys that now carry the deletion tags."""
    s3 = s3_client(credentials_block)
    counts: Counter = Counter()
    failures: list[str] = []
    tagged: list[str] = []

    def one(key: str) -> tuple[str, str, str]:
        try:
            return key, "tagged_deleted" if tag_deleted(s3, backup, key) else "already", ""
        except Exception as exc:
            return key, "failed", describe(exc)

    for key, status, message in bounded_map(one, keys, workers=WORKERS):
        _outcome(counts, failures, status, key, message)
        if status != "failed":
            tagged.append(key)
    return {**counts, "failures": failures, "tagged_keys": tagged}


@task(name="read-tags", task_run_name="read-tags-{bucket}", **PLAIN)
def deleted_keys(keys: list[str], bucket: str, credentials_block: str | None) -> list[str]:
    """Which of these objects carry the deletion tags (S3 answers for archived ones too)."""
    s3 = s3_client(credentials_block)

    def one(key: str) -> tuple[str, bool]:
        with s3_errors(bucket, key):
            tags = s3.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
        return key, is_deleted(tags)

    return sorted(k for k, gone in bounded_map(one, keys, workers=WORKERS) if gone)


@task(name="restore-copy-batch", task_run_name="copy-{backup}-to-{target}", **PLAIN)
def restore_copy_batch(
    entries: list[dict[str, Any]],
    backup: str,
    target: str,
    multipart_threshold: int,
    credentials_block: str | None,
) -> dict[str, Any]:
    """Copy readable backup objects into the target (deletion tags dropped) and check each
    copy's size and recorded source ETag."""
    from tasks.backup.copy import DELETED, DELETED_AT

    s3 = s3_client(credentials_block)
    counts: Counter = Counter()
    failures: list[str] = []

    def one(entry: dict[str, Any]) -> tuple[str, str, str]:
        key = entry["key"]
        try:
            copy_object(
                s3,
                backup,
                key,
                entry["etag"],
                target,
                "STANDARD",
                multipart_threshold,
                drop_tags=(DELETED, DELETED_AT),
            )
            with s3_errors(target, key):
                head = s3.head_object(Bucket=target, Key=key)
            if (
                int(head["ContentLength"]) != entry["size"]
                or recorded_source_etag(head) != entry["etag"]
            ):
                return key, "failed", "the copy's size or recorded ETag differs from the backup's"
            return key, "copied", ""
        except Exception as exc:
            return key, "failed", describe(exc)

    for key, status, message in bounded_map(one, entries, workers=WORKERS):
        _outcome(counts, failures, status, key, message)
    return {**counts, "failures": failures}
