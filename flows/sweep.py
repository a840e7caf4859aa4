"""After restores: a scheduled sweep over open restore ledgers, and the check a restore's
completion event triggers: how much is readable now."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.common import run_logger
from tasks.core.clients import s3_client
from tasks.core.retry import PLAIN, TRANSIENT
from tasks.core.s3 import check_bucket, iter_objects, split_s3_uri
from tasks.core.status import PENDING, ObjectStatus
from tasks.formats.ledger import escape_key, read_ledger, unescape_key
from tasks.restore.inventory import take_inventory
from tasks.restore.poll import Poll, head_pending


@task(name="check-ledger", task_run_name="check-ledger-{ledger}", **PLAIN, **TRANSIENT)
def check_ledger(bucket: str, ledger: str, credentials_block: str | None) -> dict:
    """HEAD every key a ledger still has as requested / in progress; count what is readable."""
    client = s3_client(credentials_block)
    poll = Poll(listing_supported=False)
    objects = 0
    with tempfile.TemporaryDirectory() as tmp:
        pending = Path(tmp) / "pending.txt"
        with open(pending, "w", encoding="utf-8") as f:
            for frame in read_ledger(ledger, credentials_block):
                objects += len(frame)
                for key in frame.loc[frame["status"].isin([str(p) for p in PENDING]), "key"]:
                    f.write(escape_key(key) + "\n")
        with open(pending, encoding="utf-8") as f, open(Path(tmp) / "still.txt", "w") as out:
            keys = (unescape_key(line.rstrip("\n")) for line in f)
            head_pending(client, bucket, keys, out, poll, workers=16)
    watched = poll.ready + poll.pending + poll.n_errors
    return {
        "ledger": ledger,
        "objects": objects,
        "watched": watched,
        "ready": poll.ready,
        "in progress": poll.pending,
        "errors": poll.n_errors,
        "percent ready": round(100.0 * poll.ready / watched, 1) if watched else 100.0,
    }


@flow(name="restore-progress-sweep")
def restore_progress_sweep(
    ledger_prefix: str = os.environ.get("COLDFLOW_LEDGER_PREFIX", ""),
    bucket: str | None = None,
    aws_credentials_block: str | None = None,
) -> list[dict]:
    """Report progress of every open restore ledger under an s3:// prefix.

    For each ledger CSV (as restore_prefix writes with ledger_s3_uri), the keys still
    requested or in progress are checked once and counted as ready, in progress or in
    error; a table artifact shows one row per ledger. Meant to run on a schedule.

    Args:
        ledger_prefix: s3://bucket/prefix/ holding the ledgers (default: $COLDFLOW_LEDGER_PREFIX).
        bucket: Bucket of the restored objects (default: the ledgers' bucket).
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.
    """
    log = run_logger()
    if not ledger_prefix:
        log.warning("no ledger_prefix given (or COLDFLOW_LEDGER_PREFIX set): nothing to sweep")
        return []
    ledger_bucket, prefix = split_s3_uri(ledger_prefix)
    client = s3_client(aws_credentials_block)
    ledgers = [
        f"s3://{ledger_bucket}/{o['Key']}"
        for o in iter_objects(client, ledger_bucket, prefix)
        if o["Key"].endswith(".csv")
    ]
    rows = [
        check_ledger(bucket or ledger_bucket, ledger, aws_credentials_block) for ledger in ledgers
    ]
    create_table_artifact(
        key="restore-progress",
        table=rows or [{"ledger": "(none)"}],
        description=f"Open restore ledgers under {ledger_prefix}",
    )
    log.info(
        "%d ledgers, %d restores still in progress", len(rows), sum(r["in progress"] for r in rows)
    )
    return rows


@flow(name="check-restored")
def check_restored(
    bucket: str,
    prefix: str = "",
    aws_credentials_block: str | None = None,
) -> dict[str, int]:
    """Count what is readable under a prefix now: restored or never archived, against what is
    still archived or being restored. Runs when a restore flow announces completion (the
    ``check-restored`` deployment's trigger on ``coldflow.restore.complete``), as the first
    step downstream work can hang off.

    Args:
        bucket: Bucket of the restored objects.
        prefix: Key prefix the restore covered.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        Objects listed, readable, in progress and archived (not restored).
    """
    client = s3_client(aws_credentials_block)
    check_bucket(client, bucket)
    with tempfile.TemporaryDirectory() as tmp:
        inventory = take_inventory(client, bucket, prefix, Path(tmp))
    counts = inventory.counts
    row = {
        "listed": inventory.listed,
        "readable": counts[ObjectStatus.NOT_ARCHIVED] + counts[ObjectStatus.RESTORED],
        "in progress": counts[ObjectStatus.IN_PROGRESS],
        "archived": counts[ObjectStatus.ARCHIVED],
    }
    create_table_artifact(
        key="restored-check",
        table=[row],
        description=f"Readable objects under s3://{bucket}/{prefix}",
    )
    run_logger().info("s3://%s/%s: %s", bucket, prefix, row)
    return row
