"""Thaw S3 Glacier vault archives into S3: validate → estimate → start jobs → wait → copy
(tree-hash verified) → delete the archive → report.

    from flows.vault import thaw_vault_archives
    rows = thaw_vault_archives("lab-vault", "imaging-cold", prefix="from-vault/",
                               storage_class="DEEP_ARCHIVE", delete_archive=True)
"""

from __future__ import annotations

from dataclasses import replace
from itertools import islice
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import raise_if_failed, run_logger, submit_bounded
from tasks.core.bucket_facts import announce_buckets
from tasks.core.clients import client, s3_client
from tasks.core.errors import InputError, ItemsFailedError, describe
from tasks.core.s3 import StorageClass, Tier, check_bucket
from tasks.core.sensor import Backoff
from tasks.core.status import ItemStatus
from tasks.restore.plan import EXPENSIVE_GB, EXPENSIVE_OBJECTS
from tasks.restore.pricing import GB, estimate_vault
from tasks.vault import tasks as vault_tasks
from tasks.vault.archives import (
    ArchiveSpec,
    check_prefix,
    check_specs,
    from_inventory,
    read_archive_map,
)
from tasks.vault.jobs import Started, check_vault, running_jobs
from tasks.vault.tasks import ThawRow

VaultTier = Literal[
    "Expedited", "Standard", "Bulk"
]  #: Rounds of "start a new job, wait, copy" for outputs that expired before they were copied.
EXPIRED_ROUNDS = 2


class ArchivesFailedError(ItemsFailedError):
    """Some archives were not thawed; ``summary`` holds every archive's row."""


def _batches(items: list, size: int) -> list[list]:
    it = iter(items)
    return [b for b in iter(lambda: list(islice(it, size)), [])]


@flow(name="thaw-vault", task_runner=ThreadPoolTaskRunner(max_workers=8), validate_parameters=True)
def thaw_vault_archives(
    vault_name: str,
    bucket: str,
    archives: dict[str, str] | str | None = None,
    prefix: str = "",
    tier: Tier = "Standard",
    storage_class: StorageClass = "STANDARD",
    delete_archive: bool = False,
    dry_run: bool = False,
    allow_expensive: bool = False,
    expensive_objects: Annotated[int, Field(ge=0)] = EXPENSIVE_OBJECTS,
    expensive_gb: Annotated[float, Field(ge=0)] = EXPENSIVE_GB,
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100,
    parallel_batches: Annotated[int, Field(ge=1, le=8)] = 2,
    poll_interval: Annotated[float, Field(gt=0)] = 60.0,
    max_poll_interval: Annotated[float, Field(gt=0)] = 1800.0,
    timeout: Annotated[float, Field(gt=0)] = 48 * 3600.0,
    smallest_chunk_mib: Annotated[int, Field(ge=1, le=4096)] = 8,
    aws_credentials_block: str | None = None,
) -> list[dict]:
    """Copy S3 Glacier vault archives into an S3 bucket, verified by their SHA-256 tree hash,
    and delete each vault archive only once its copy is verified (and only when asked).

    Every input is checked before any job starts. The estimate is published first;
    dry_run stops there. Expedited falls back to Standard per archive when Glacier has no
    capacity. Jobs already running for an archive are reused; archives already copied and
    verified by an earlier run are not copied again. Fails, after every archive had its
    turn, if any archive was not thawed.

    Args:
        vault_name: The Glacier vault to drain.
        bucket: The S3 bucket the archives are copied into.
        archives: Archive id → target key (a mapping, or a local / s3:// CSV with columns
            archive_id,key). None: every archive of the vault, named by its description
            when that is a safe relative key, else by its archive id (an inventory job runs
            first, which takes hours on Glacier).
        prefix: Prepended to every target key.
        tier: Retrieval tier (Expedited falls back to Standard when capacity is short).
        storage_class: Storage class of the copies in S3 (DEEP_ARCHIVE for cold copies).
        delete_archive: Delete each vault archive, only once its copy is verified.
        dry_run: Check and estimate only; start no job.
        allow_expensive: Allow Expedited above expensive_objects / expensive_gb.
        expensive_objects: Expedited on more archives than this needs allow_expensive.
        expensive_gb: Expedited on more GB than this needs allow_expensive.
        batch_size: Archives per task run (jobs started, copies made).
        parallel_batches: Batches copied at the same time.
        poll_interval: First wait between job polls, seconds (doubles up to max_poll_interval).
        max_poll_interval: Longest wait between job polls, seconds.
        timeout: Fail, with counts, if jobs are still running after this many seconds.
        smallest_chunk_mib: Smallest range read and uploaded as one part (a power of two MiB
            is used, doubled until the archive fits 10,000 parts).
        aws_credentials_block: Name of a prefect-aws AwsCredentials block.

    Returns:
        One dict per archive: archive_id, key, status (thawed, skipped, failed, dry-run),
        job_id, tier, bytes, tree_hash_ok, deleted, message.
    """
    log = run_logger()
    check_prefix(prefix)
    specs = (
        read_archive_map(archives, prefix, aws_credentials_block) if archives is not None else None
    )
    glacier = client("glacier", aws_credentials_block)
    vault = check_vault(glacier, vault_name)
    s3 = s3_client(aws_credentials_block)
    check_bucket(s3, bucket)
    announce_buckets(s3, [bucket], "thaw-vault", "each copy becomes a new current version")
    backoff = Backoff(poll_interval, max_poll_interval, timeout)

    if specs is None and not dry_run:
        inventory = vault_tasks.take_inventory(vault_name, backoff, aws_credentials_block)
        specs = from_inventory(inventory, prefix)
        check_specs(specs)
    known = specs is not None and all(s.size is not None for s in specs)
    n = len(specs) if specs is not None else int(vault.get("NumberOfArchives", 0))
    nbytes = sum(s.size or 0 for s in specs or []) if known else int(vault.get("SizeInBytes", 0))
    _estimate(tier, n, nbytes, known, allow_expensive, expensive_objects, expensive_gb)
    if dry_run:
        rows = [
            ThawRow(
                s.archive_id,
                s.key,
                ItemStatus.DRY_RUN,
                tier=tier,
                bytes=s.size or 0,
                message="dry run: no job started",
            )
            for s in specs or []
        ]
        return _finish(rows, vault_name)

    assert specs is not None
    running = running_jobs(glacier, vault_name)
    specs = [
        replace(s, tree_hash=s.tree_hash or running[s.archive_id].tree_hash)
        if s.archive_id in running
        else s
        for s in specs
    ]
    rows = {s.archive_id: ThawRow(s.archive_id, s.key, tier=tier) for s in specs}
    copied: set[str] = set()
    for batch in _batches(specs, 1000):
        copied.update(vault_tasks.find_copied(vault_name, bucket, batch, aws_credentials_block))
    for archive_id in copied:
        row = rows[archive_id]
        row.status, row.tree_hash_ok = ItemStatus.SKIPPED, True
        row.message = "already in S3 and verified (tree hash recorded on the object)"
    todo = [s for s in specs if s.archive_id not in copied]
    log.info("%s: %d archives to thaw, %d already in S3", vault_name, len(todo), len(copied))

    for round_ in range(EXPIRED_ROUNDS):
        if not todo:
            break
        _start(vault_name, todo, tier, running, rows, batch_size, aws_credentials_block)
        waiting = [rows[s.archive_id] for s in todo if rows[s.archive_id].job_id]
        failed_jobs = (
            vault_tasks.wait_for_jobs(
                vault_name, [r.job_id for r in waiting], backoff, aws_credentials_block
            )
            if waiting
            else {}
        )
        for row in waiting:
            if row.job_id in failed_jobs:
                row.status, row.message = (
                    ItemStatus.FAILED,
                    f"job failed: {failed_jobs[row.job_id]}",
                )
        ready = [r for r in waiting if r.job_id not in failed_jobs]
        _in_batches(
            vault_tasks.copy_archives,
            ready,
            rows,
            batch_size,
            parallel_batches,
            "not copied",
            vault=vault_name,
            bucket=bucket,
            storage_class=storage_class,
            credentials_block=aws_credentials_block,
            smallest_chunk=smallest_chunk_mib * 1024 * 1024,
        )
        todo = [s for s in todo if rows[s.archive_id].extra.get("expired")]
        running = {}
        if todo:
            log.warning(
                "%d job outputs expired before they were copied: new jobs (round %d)",
                len(todo),
                round_ + 2,
            )

    if delete_archive:
        verified = [rows[s.archive_id] for s in specs if rows[s.archive_id].tree_hash_ok]
        _in_batches(
            vault_tasks.delete_archives,
            verified,
            rows,
            batch_size,
            parallel_batches,
            "verified in S3 but the archive was not deleted",
            vault=vault_name,
            credentials_block=aws_credentials_block,
        )
    return _finish([rows[s.archive_id] for s in specs], vault_name)


def _in_batches(
    task: Any,
    items: list[ThawRow],
    rows: dict[str, ThawRow],
    batch_size: int,
    parallel: int,
    failure: str,
    **kwargs: Any,
) -> None:
    """Run a per-batch task over rows; its returned rows replace ours, and a batch whose task
    failed as a whole marks its rows failed with the reason."""
    batches = _batches(items, batch_size)
    futures = submit_bounded(task, batches, parallel, **kwargs)
    for batch, future in zip(batches, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            for row in batch:
                row.status = ItemStatus.FAILED
                row.message = f"{failure}: {describe(outcome)}"
            continue
        for row in outcome:
            rows[row.archive_id] = row


def _start(
    vault: str,
    todo: list[ArchiveSpec],
    tier: str,
    running: dict[str, Started],
    rows: dict[str, ThawRow],
    batch_size: int,
    credentials_block: str | None,
) -> None:
    """Start (or reuse) a job per archive, a batch per task run; record them in the rows."""
    for batch in _batches([s.archive_id for s in todo], batch_size):
        started = vault_tasks.start_jobs(vault, batch, tier, running, credentials_block)
        for archive_id, outcome in started.items():
            row = rows[archive_id]
            row.extra.pop("expired", None)
            if isinstance(outcome, Started):
                row.job_id, row.tier = outcome.job_id, outcome.tier
                notes = ["reused a running job"] if outcome.reused else []
                if outcome.fell_back:
                    notes.append("Expedited capacity short: Standard")
                row.message = "; ".join(notes)
            else:
                row.job_id, row.status, row.message = "", ItemStatus.FAILED, outcome


def _estimate(
    tier: str,
    n: int,
    nbytes: int,
    known: bool,
    allow_expensive: bool,
    expensive_objects: int,
    expensive_gb: float,
) -> None:
    estimated = estimate_vault(tier, n, nbytes)
    note = "" if known else " (sizes from the vault's description: an upper bound)"
    create_markdown_artifact(
        key="thaw-estimate",
        markdown=estimated.as_markdown().replace("Restore estimate", "Vault retrieval estimate")
        + note,
        description="Cost and time of the vault retrieval, before any job",
    )
    run_logger().info(
        "%d archives, %.2f GB: estimated $%.2f (%s)%s",
        n,
        nbytes / GB,
        estimated.total_cost,
        tier,
        note,
    )
    if (
        tier == "Expedited"
        and not allow_expensive
        and (n > expensive_objects or nbytes / GB > expensive_gb)
    ):
        raise InputError(
            f"Expedited on {n:,} archives ({nbytes / GB:,.1f} GB) would cost about "
            f"${estimated.total_cost:,.2f}; pass allow_expensive=True to go ahead, or use "
            "Standard or Bulk"
        )


def _finish(rows: list[ThawRow], vault: str) -> list[dict]:
    results = [r.as_dict() for r in rows]
    create_table_artifact(
        key="thaw-vault",
        table=[
            {
                k: r[k]
                for k in (
                    "archive_id",
                    "job_id",
                    "tier",
                    "bytes",
                    "tree_hash_ok",
                    "key",
                    "deleted",
                    "status",
                    "message",
                )
            }
            for r in results
        ]
        or [{"archive_id": "(none)"}],
        description=f"Archives of vault {vault}",
    )
    raise_if_failed(
        results,
        {ItemStatus.THAWED, ItemStatus.SKIPPED, ItemStatus.DRY_RUN},
        "thawed",
        noun="archives",
        id_field="archive_id",
        error=ArchivesFailedError,
    )
    return results
