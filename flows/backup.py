"""Incremental bucket backups, restores into a fresh bucket, and bucket comparisons.

    from flows.backup import backup_bucket, restore_bucket, compare_buckets
    backup_bucket("imaging-live", "imaging-backup", storage_class="DEEP_ARCHIVE")
    restore_bucket("imaging-backup", "imaging-restored", create_target=True, tier="Bulk")

backup_bucket: list both (merged as streams) → copy new and changed objects (batches) →
tag objects deleted from the source → report. restore_bucket (flows/bucket_restore.py):
list → leave out what is tagged deleted → restore archived objects → copy → verify.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.bucket_restore import restore_bucket
from flows.common import DEFAULT_SCRATCH, run_logger, stream_bounded
from tasks.backup import tasks as backup_tasks
from tasks.backup.copy import recorded_source_etag
from tasks.backup.diff import (
    RESERVED,
    Change,
    Passed,
    SortedKeys,
    check_prefix,
    classify,
    listed,
    make_dir,
    merge,
)
from tasks.core.bucket_facts import announce_buckets
from tasks.core.clients import s3_client
from tasks.core.concurrency import bounded_map
from tasks.core.errors import BackupFailedError, InputError
from tasks.core.memory import limit_malloc_arenas
from tasks.core.pace import Tally
from tasks.core.s3 import MIB, StorageClass, check_bucket, download_if_exists, split_s3_uri
from tasks.formats.ledger import escape_key
from tasks.formats.listing import REPORT_SAMPLE, sort_file

__all__ = ["backup_bucket", "compare_buckets", "restore_bucket"]  #: Keys per task run.
BATCH = 1000


def _ledger_key(prefix: str) -> str:
    """Where the keys tagged deleted for this prefix are recorded in the backup bucket."""
    return f"{RESERVED}deleted/{hashlib.sha256(prefix.encode()).hexdigest()[:16]}.txt"


@flow(
    name="backup-bucket", task_runner=ThreadPoolTaskRunner(max_workers=8), validate_parameters=True
)
def backup_bucket(
    source: str,
    backup: str,
    prefix: str = "",
    storage_class: StorageClass = "STANDARD",
    modified_within_hours: Annotated[float, Field(gt=0)] | None = None,
    dry_run: bool = False,
    parallel_batches: Annotated[int, Field(ge=1, le=16)] = 4,
    multipart_threshold_mib: Annotated[int, Field(ge=5, le=5120)] = 5120,
    work_dir: str = DEFAULT_SCRATCH,
    aws_credentials_block: str | None = None,
) -> dict:
    """Copy new and changed objects from a source bucket to a backup bucket, and tag backup
    objects whose source was deleted (Deleted=True, DeletedAt=UTC) instead of deleting them.

    Listings are merged as streams. "Changed" means another size, or content other than the
    source ETag recorded on the backup copy, whatever its age. Copies are server-side, in
    batches, and carry metadata, content type and tags. A key back in the source loses its
    deletion tags. A second run with no changes copies and tags nothing.

    Args:
        source: The bucket to back up.
        backup: The bucket that receives the copies (it must exist).
        prefix: Only keys under this prefix ("" for the whole bucket).
        storage_class: Storage class of the copies (GLACIER_IR or DEEP_ARCHIVE for cheap ones).
        modified_within_hours: Look closer (beyond size) only at source objects modified within
            this many hours; a speed-up for huge buckets, new and deleted keys are still found.
        dry_run: Count what would be copied and tagged; write nothing.
        parallel_batches: Batches of 1,000 keys worked on at once.
        multipart_threshold_mib: Objects above this are copied in parts (at most 5,120 MiB,
            S3's limit for one copy).
        work_dir: Local folder for the deleted-keys ledger while the run lasts.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Counts: listed, copied, unchanged, tagged_deleted, untagged, failed, bytes_copied.
    """
    log = run_logger()
    check_prefix(prefix)
    if source == backup:
        raise InputError("source and backup must be different buckets")
    limit_malloc_arenas()  # flat memory with pages listed by two dozen threads
    s3 = s3_client(aws_credentials_block)
    # no HEAD of either bucket: reading their facts (four questions each, asked at once)
    # fails clearly on an unknown bucket, so an unchanged run costs those and two listings
    _, backup_facts = announce_buckets(
        s3,
        [source, backup],
        "backup-bucket",
        "current versions are copied; a key whose current version is a delete marker counts "
        "as deleted (its backup copy is tagged)",
    )
    cutoff = (
        datetime.now(UTC) - timedelta(hours=modified_within_hours)
        if modified_within_hours
        else None
    )
    work = Path(tempfile.mkdtemp(prefix="backup-", dir=make_dir(work_dir)))
    counts: Counter = Counter(
        dict.fromkeys(("listed", "copied", "unchanged", "tagged_deleted", "untagged", "failed"), 0)
    )
    counts["bytes_copied"] = 0
    failures: list[str] = []
    try:
        ledger_key = _ledger_key(prefix)
        before = work / "deleted-before.txt"
        after = work / "deleted-after.txt"
        # a whole-bucket listing shows the ledger's key too: when it has gone past that key
        # without showing it, there is no ledger and no GET to make
        passed = Passed() if ledger_key.startswith(prefix) else None

        def earlier_deletions() -> Iterator[str]:
            """The ledger's lines (keys tagged deleted by earlier runs), read when first asked."""
            if passed is not None and passed.shown(ledger_key) is False:
                return
            if download_if_exists(s3, backup, ledger_key, before):
                with open(before, encoding="utf-8") as f:
                    yield from f

        queued = {"copy_bytes": 0, "done_bytes": 0}
        where = f"s3://{source}/{prefix} → s3://{backup}"
        writes = Tally("write")
        progress = create_progress_artifact(0.0, key="backup-progress", description=where)

        def work_items() -> Iterator[tuple[str, list]]:
            """("copy" | "tag", batch) in listing order; unchanged and already-tagged keys
            are counted (and kept in the ledger) on the way."""
            with open(after, "w", encoding="utf-8") as out:
                was_deleted = SortedKeys(earlier_deletions())
                copies: list[dict] = []
                tags: list[str] = []
                for key, src, bak in merge(
                    listed(s3, source, prefix), listed(s3, backup, prefix, passed)
                ):
                    counts["listed"] += 1
                    change = classify(src, bak, key in was_deleted, cutoff)
                    if change == Change.SAME:
                        counts["unchanged"] += 1
                    elif change == Change.TAGGED:
                        counts["unchanged"] += 1
                        out.write(escape_key(key) + "\n")
                    elif change == Change.DELETED:
                        tags.append(key)
                    else:
                        copies.append({**src.as_entry(), "change": str(change)})
                        if change != Change.REAPPEARED:
                            queued["copy_bytes"] += src.size
                    if len(copies) >= BATCH:
                        yield "copy", copies
                        copies = []
                    if len(tags) >= BATCH:
                        yield "tag", tags
                        tags = []
                if copies:
                    yield "copy", copies
                if tags:
                    yield "tag", tags

        if dry_run:
            for kind, batch in work_items():
                if kind == "copy":
                    counts["copied"] += len(batch)
                    counts["bytes_copied"] += sum(e["size"] for e in batch)
                else:
                    counts["tagged_deleted"] += len(batch)
            log.info("dry run: %s", dict(counts))
            return {**dict(counts), "dry_run": True}

        with open(after, "a", encoding="utf-8") as ledger_out:
            for (kind, batch), future in stream_bounded(
                _Dispatch(
                    source,
                    backup,
                    storage_class,
                    multipart_threshold_mib * MIB,
                    aws_credentials_block,
                    record_source=backup_facts.encryption.startswith("aws:kms"),
                ),
                work_items(),
                parallel_batches,
            ):
                outcome = future.result(raise_on_failure=False)
                if isinstance(outcome, BaseException):
                    counts["failed"] += len(batch)
                    if len(failures) < REPORT_SAMPLE:
                        failures.append(f"a batch of {len(batch)} {kind} failed: {outcome}")
                    continue
                for name in ("copied", "unchanged", "tagged_deleted", "untagged", "failed"):
                    counts[name] += outcome.get(name, 0)
                counts["unchanged"] += outcome.get("already", 0)
                counts["bytes_copied"] += outcome.get("bytes_copied", 0)
                failures.extend(outcome["failures"][: REPORT_SAMPLE - len(failures)])
                for key in outcome.get("tagged_keys", []):
                    ledger_out.write(escape_key(key) + "\n")
                queued["done_bytes"] += outcome.get("bytes_copied", 0)
                if queued["copy_bytes"]:
                    update_progress_artifact(
                        progress,
                        100.0 * queued["done_bytes"] / queued["copy_bytes"],
                        description=f"{where}: {writes.line()}",
                    )
        # keys back in the source left the ledger as they were untagged (not written to it)
        sort_file(after)
        if before.exists() and before.stat().st_size:  # a ledger was read: write it if it changed
            changed = not filecmp.cmp(before, after, shallow=False)
        else:
            changed = after.stat().st_size > 0
        if changed:
            s3.upload_file(str(after), backup, ledger_key)
        update_progress_artifact(progress, 100.0, description=f"{where}: {writes.line()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {**dict(counts), "failures": failures}
    create_table_artifact(
        key="backup-bucket",
        table=[{"count": k, "value": v} for k, v in counts.items()],
        description=f"Backup of s3://{source}/{prefix} into s3://{backup}",
    )
    log.info("backup of s3://%s/%s: %s", source, prefix, dict(counts))
    if counts["failed"]:
        raise BackupFailedError(
            f"{counts['failed']} objects not backed up or tagged: " + "; ".join(failures[:5]),
            [result],
        )
    return result


class _Dispatch:
    """Submits a ("copy" | "tag", batch) work item to its task."""

    def __init__(
        self,
        source: str,
        backup: str,
        storage_class: str,
        threshold: int,
        credentials_block: str | None,
        record_source: bool = False,
    ) -> None:
        self.source, self.backup, self.storage_class = source, backup, storage_class
        self.threshold, self.credentials_block = threshold, credentials_block
        self.record_source = record_source

    def submit(self, item: tuple[str, list]) -> Any:
        kind, batch = item
        if kind == "copy":
            return backup_tasks.copy_batch.submit(
                batch,
                self.source,
                self.backup,
                self.storage_class,
                self.threshold,
                self.credentials_block,
                self.record_source,
            )
        return backup_tasks.tag_batch.submit(batch, self.backup, self.credentials_block)


@flow(name="compare-buckets", validate_parameters=True)
def compare_buckets(
    a: str,
    b: str,
    prefix: str = "",
    report: str | None = None,
    aws_credentials_block: str | None = None,
) -> dict:
    """Compare two buckets under a prefix by their listings: keys missing from b, differing
    (size, or ETag where b's copy does not record a's ETag as its source), extra in b, and the
    same. Differences go to a CSV.

    Args:
        a: The reference bucket (say, the source).
        b: The bucket compared with it (say, the backup).
        prefix: Only keys under this prefix.
        report: Where to write the CSV of differences (a local path or an s3:// URI);
            default: a file in the temp folder.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Counts (missing, differing, extra, same) and the report's path or URI.
    """
    check_prefix(prefix)
    limit_malloc_arenas()  # flat memory with pages listed by two dozen threads
    s3 = s3_client(aws_credentials_block)
    check_bucket(s3, a)
    check_bucket(s3, b)
    announce_buckets(s3, [a, b], "compare-buckets", "current versions are compared")
    if report and report.startswith("s3://"):
        split_s3_uri(report)
    counts: Counter = Counter(dict.fromkeys(("missing", "differing", "extra", "same"), 0))
    fd, local = tempfile.mkstemp(prefix="compare-", suffix=".csv")
    import csv

    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["key", "status", "size_a", "size_b", "etag_a", "etag_b"])

        def judged(pair: tuple[str, Any, Any]) -> tuple[str, Any, Any, str]:
            key, x, y = pair
            if y is None:
                return key, x, y, "missing"
            if x is None:
                return key, x, y, "extra"
            if x.size != y.size:
                return key, x, y, "differing"
            if x.etag == y.etag:
                return key, x, y, "same"
            # same size, other ETag: a copy under SSE-KMS or a multipart copy has an ETag of
            # its own; the source ETag backup_bucket recorded on it decides
            head = s3.head_object(Bucket=b, Key=key)
            return key, x, y, "same" if recorded_source_etag(head) == x.etag else "differing"

        pairs = merge(listed(s3, a, prefix), listed(s3, b, prefix))
        for key, x, y, status in bounded_map(judged, pairs, workers=16):
            counts[status] += 1
            if status == "same":
                continue
            out.writerow(
                [
                    key,
                    status,
                    x.size if x else "",
                    y.size if y else "",
                    x.etag if x else "",
                    y.etag if y else "",
                ]
            )
    if report and report.startswith("s3://"):
        bucket, key = split_s3_uri(report)
        s3.upload_file(local, bucket, key)
        os.unlink(local)
        where = report
    elif report:
        shutil.move(local, report)
        where = report
    else:
        where = local
    create_table_artifact(
        key="compare-buckets",
        table=[{"status": k, "objects": v} for k, v in counts.items()],
        description=f"s3://{a}/{prefix} against s3://{b}/{prefix}; differences in {where}",
    )
    return {**dict(counts), "report": where}
