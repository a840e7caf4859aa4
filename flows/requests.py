"""estimate → refuse unwise tiers → request batches → ledger → wait: the orchestration both
restore flows share. Runs inside a flow."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import run_logger, submit_bounded
from tasks.core.clients import s3_client
from tasks.core.errors import RestoreTimeout
from tasks.core.events import emit_restore_event
from tasks.core.s3 import split_s3_uri
from tasks.core.status import ObjectStatus
from tasks.formats.ledger import merge_ledgers, merge_pending
from tasks.restore import tasks as restore_tasks
from tasks.restore.inventory import Inventory
from tasks.restore.plan import RequestPlan, refuse_unwise_tier
from tasks.restore.pricing import estimate
from tasks.restore.requests import REPORTED


def request_and_wait(
    inventory: Inventory,
    work: Path,
    bucket: str,
    prefix: str,
    plan: RequestPlan,
    wait: bool = True,
    dry_run: bool = False,
    ledger_path: str | None = None,
    ledger_s3_uri: str | None = None,
    flow: str = "restore-prefix",
) -> dict:
    """Publish the estimate, request every batch, write the ledger and, with ``wait``, hold
    until every requested restore is readable. Returns counts by status.

    Ends with one ``coldflow.restore.<status>`` event (Complete, Requested without ``wait``,
    Timeout), none for a dry run."""
    log = run_logger()
    estimated = estimate(plan.tier, inventory.to_request, inventory.to_request_bytes)
    create_markdown_artifact(
        key="restore-estimate",
        markdown=estimated.as_markdown(),
        description="Cost and time of the restore, before requesting",
    )
    log.info(
        "s3://%s/%s: %d objects to restore, estimated $%.2f (%s)",
        bucket,
        prefix,
        sum(inventory.to_request.values()),
        estimated.total_cost,
        plan.tier,
    )
    refuse_unwise_tier(plan, inventory, estimated.total_cost)

    counts: Counter = Counter(dict.fromkeys(REPORTED, 0))
    counts.update(inventory.counts)
    counts.pop(ObjectStatus.ARCHIVED, None)
    result: dict = {
        "listed": inventory.listed,
        "estimated_cost": round(estimated.total_cost, 2),
        "requests": inventory.listed // 1000 + 1 + inventory.heads,
    }
    if dry_run:
        counts[ObjectStatus.ARCHIVED] = sum(inventory.to_request.values())
        return {**result, **_plain(counts)}

    futures = submit_bounded(
        restore_tasks.request_restores,
        inventory.batches,
        plan.parallel_batches,
        bucket=bucket,
        tier=plan.tier,
        days=plan.days,
        workers=plan.request_workers,
        credentials_block=plan.credentials_block,
    )
    for future in futures:
        batch_counts = future.result()
        counts.update(batch_counts)
        result["requests"] += sum(v for k, v in batch_counts.items() if k != "fell_back")
    batches = [Path(b) for b in inventory.batches]

    ledger = Path(ledger_path) if ledger_path else work.parent / f"{work.name}-ledger.csv"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    merge_ledgers(
        [work / "ledger-inventory.csv", *(b.with_suffix(".ledger.csv") for b in batches)], ledger
    )
    result["ledger"] = str(ledger)
    if ledger_s3_uri:
        ledger_bucket, ledger_key = split_s3_uri(ledger_s3_uri)
        s3_client(plan.credentials_block).upload_file(str(ledger), ledger_bucket, ledger_key)
        result["ledger_s3_uri"] = ledger_s3_uri
    pending = work / "pending.txt"
    n_pending = merge_pending(
        [work / "pending-inventory.txt", *(b.with_suffix(".pending.txt") for b in batches)], pending
    )
    create_table_artifact(
        key="restore-requests",
        table=[{"status": str(k), "objects": v} for k, v in sorted(counts.items())],
        description=f"Restore requests under s3://{bucket}/{prefix} ({plan.tier})",
    )
    log.info("requested: %s; %d pending", _plain(counts), n_pending)

    result["ready"] = 0
    status = "Complete" if wait else "Requested"
    try:
        if wait and n_pending:
            seen = restore_tasks.wait_for_restores(
                bucket, prefix, str(pending), inventory.listed, plan.backoff, plan.credentials_block
            )
            result["ready"] = seen[ObjectStatus.READY]
            result["requests"] += seen["requests"]
            result["sensor_requests"] = seen["requests"]
            counts[ObjectStatus.ERROR] += seen[ObjectStatus.ERROR]
    except RestoreTimeout as exc:
        status = "Timeout"
        result["ready"] = int(exc.counts.get(ObjectStatus.READY, 0))
        raise
    except Exception:
        status = "Failed"
        raise
    finally:
        _announce(flow, status, bucket, prefix, result, counts)
    return {**result, **_plain(counts)}


def _announce(
    flow: str, status: str, bucket: str, prefix: str, result: dict, counts: Counter
) -> None:
    """The restore's one completion event, with the same counts bulk_restore reports."""
    done = {ObjectStatus.RESTORED, ObjectStatus.NOT_ARCHIVED, ObjectStatus.ERROR}
    watched = sum(v for k, v in counts.items() if k not in done and k != "fell_back")
    total = watched + counts[ObjectStatus.RESTORED] + counts[ObjectStatus.ERROR]
    restored = counts[ObjectStatus.RESTORED] + result.get("ready", 0)
    failed = counts[ObjectStatus.ERROR]
    percent = round(100.0 * (restored + failed) / total, 2) if total else 100.0
    emit_restore_event(
        flow,
        status,
        bucket,
        prefix,
        {
            "jobs": [],
            "total": total,
            "restored": restored,
            "failed": failed,
            "percent": percent,
            "ledger": result.get("ledger", ""),
        },
    )


def _plain(counts: Counter) -> dict[str, int]:
    """Counts keyed by plain strings (the result travels as JSON)."""
    return {str(k): v for k, v in counts.items()}
