"""list → request batches under a cost ceiling → ledger → wait: the orchestration the restore
flows share (estimate first where a mistake is expensive). Runs inside a flow."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import run_logger, stream_bounded
from tasks.core.clients import s3_client
from tasks.core.errors import CostCeilingError, RestoreTimeout
from tasks.core.events import emit_restore_event
from tasks.core.progress import RequestBoard
from tasks.core.s3 import split_s3_uri
from tasks.core.status import PENDING, ObjectStatus
from tasks.formats.ledger import LedgerWriter, escape_key, merge_ledgers, merge_pending
from tasks.restore import tasks as restore_tasks
from tasks.restore.inventory import Inventory, RequestBatch, spooled_batches
from tasks.restore.plan import RequestPlan, refuse_unwise_tier
from tasks.restore.pricing import DEFAULT_MAX_COST_USD, Estimate, estimate
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
    listing: Iterator[RequestBatch] | None = None,
) -> dict:
    """Request every batch under the plan's cost ceiling, write the ledger and, with ``wait``,
    hold until every requested restore is readable. Returns counts by status.

    Two ways in. With a complete ``inventory`` (``listing`` None) the estimate comes first:
    an unwise tier or a total above the ceiling is refused before any request. With
    ``listing`` (batches yielded as the prefix is listed into ``inventory``), requests start
    with the first batch; before each, what was requested plus that batch must stay under the
    ceiling, otherwise requesting stops and the run fails with counts once the listing ends.
    The estimate artifact follows the listing and is final when it ends.

    Ends with one ``coldflow.restore.<status>`` event (Complete, Requested without ``wait``,
    Timeout, Failed), none for a dry run."""
    log = run_logger()
    work.mkdir(parents=True, exist_ok=True)
    ceiling = Ceiling(plan, EstimateBoard(inventory, plan.tier, bucket, prefix))
    if listing is None:
        estimated = ceiling.board.publish(final=True)
        refuse_unwise_tier(plan, inventory, estimated.total_cost)
        if not dry_run:
            ceiling.refuse_total(estimated.total_cost, sum(inventory.to_request.values()))
        batches: Iterator[RequestBatch] = spooled_batches(inventory)
    else:
        batches = listing
    result: dict = {"listed": 0, "estimated_cost": 0.0, "requests": 0}
    counts: Counter = Counter(dict.fromkeys(REPORTED, 0))
    if dry_run:
        for _ in listing or ():  # the whole listing, for the estimate
            pass
        counts.update(inventory.counts)
        result.update(_inventory_figures(inventory, ceiling.board.publish(final=True)))
        return {**result, **_plain(counts)}

    board = RequestBoard("restore-request-progress", "objects requested")
    ledger_part = LedgerWriter(work / "ledger-requests.csv")
    pending_part = open(work / "pending-requests.txt", "w", encoding="utf-8")  # noqa: SIM115
    try:
        for _, future in stream_bounded(
            restore_tasks.request_restores,
            ceiling.admit(batches, ledger_part),
            plan.parallel_batches,
            bucket=bucket,
            tier=plan.tier,
            days=plan.days,
            workers=plan.request_workers,
            credentials_block=plan.credentials_block,
            max_requests_per_second=plan.max_requests_per_second,
            run=str(work),
        ):
            outcome = future.result()
            board.add(
                len(outcome.rows),
                outcome.sent,
                outcome.throttled,
                total=sum(inventory.to_request.values()) - ceiling.refused,
            )
            counts.update(outcome.counts)
            result["requests"] += sum(v for k, v in outcome.counts.items() if k != "fell_back")
            for c, status, message in outcome.rows:
                ledger_part.add(c, status, message)
                if status in PENDING:
                    pending_part.write(escape_key(c.key) + "\n")
    finally:
        ledger_part.flush()
        pending_part.close()
    board.publish(final=True)
    if board.sent:
        log.info("restore requests: %s", board.line())
    estimated = ceiling.board.publish(final=True)
    refused = ceiling.refused
    counts.update({k: v for k, v in inventory.counts.items() if k != ObjectStatus.ARCHIVED})
    counts[ObjectStatus.ARCHIVED] = refused
    if not refused:
        del counts[ObjectStatus.ARCHIVED]
    figures = _inventory_figures(inventory, estimated)
    result["requests"] += figures.pop("requests")
    result.update(figures)
    result["requested_cost"] = round(ceiling.spent, 2)

    ledger = Path(ledger_path) if ledger_path else work.parent / f"{work.name}-ledger.csv"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    merge_ledgers([work / "ledger-inventory.csv", work / "ledger-requests.csv"], ledger)
    result["ledger"] = str(ledger)
    if ledger_s3_uri:
        ledger_bucket, ledger_key = split_s3_uri(ledger_s3_uri)
        s3_client(plan.credentials_block).upload_file(str(ledger), ledger_bucket, ledger_key)
        result["ledger_s3_uri"] = ledger_s3_uri
    pending = work / "pending.txt"
    n_pending = merge_pending(
        [work / "pending-inventory.txt", work / "pending-requests.txt"], pending
    )
    create_table_artifact(
        key="restore-requests",
        table=[{"status": str(k), "objects": v} for k, v in sorted(counts.items())],
        description=f"Restore requests under s3://{bucket}/{prefix} ({plan.tier})",
    )
    log.info("requested: %s; %d pending", _plain(counts), n_pending)

    result["ready"] = 0
    if refused:
        _announce(flow, "Failed", bucket, prefix, result, counts)
        raise CostCeilingError(ceiling.stop_message(estimated.total_cost), _plain(counts))
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


def _inventory_figures(inventory: Inventory, estimated: Estimate) -> dict:
    """What the listing itself reports: objects listed, the estimate, requests it made."""
    return {
        "listed": inventory.listed,
        "estimated_cost": round(estimated.total_cost, 2),
        "requests": inventory.listed // 1000 + 1 + inventory.heads,
    }


class EstimateBoard:
    """The ``restore-estimate`` artifact: republished as the listing proceeds (at most every
    :data:`BOARD_SECONDS`), final when it ends."""

    def __init__(self, inventory: Inventory, tier: str, bucket: str, prefix: str) -> None:
        self.inventory, self.tier = inventory, tier
        self.where = f"s3://{bucket}/{prefix}"
        self.shown = 0.0
        self.final = False  # once the listing is complete, no "in progress" version follows

    def current(self) -> Estimate:
        return estimate(self.tier, self.inventory.to_request, self.inventory.to_request_bytes)

    def publish(self, final: bool = False) -> Estimate:
        estimated = self.current()
        if not final and (self.final or time.monotonic() - self.shown < BOARD_SECONDS):
            return estimated
        self.shown = time.monotonic()
        self.final = self.final or final
        state = (
            "final"
            if final
            else f"listing in progress: {self.inventory.listed:,} objects listed so far"
        )
        create_markdown_artifact(
            key="restore-estimate",
            markdown=estimated.as_markdown() + f"\n\n{self.where}: {state}.",
            description=f"Cost and time of the restore ({state})",
        )
        if final:
            run_logger().info(
                "%s: %d objects to restore, estimated $%.2f (%s)",
                self.where,
                sum(self.inventory.to_request.values()),
                estimated.total_cost,
                self.tier,
            )
        return estimated


#: Seconds between two versions of the estimate artifact while the listing goes on.
BOARD_SECONDS = 5.0


class Ceiling:
    """The plan's cost ceiling: admits request batches while what was requested plus the next
    batch stays under it; after that, every later object goes to the ledger unrequested."""

    def __init__(self, plan: RequestPlan, board: EstimateBoard) -> None:
        self.tier, self.board = plan.tier, board
        self.limit = (
            plan.max_cost_usd
            if plan.max_cost_usd is not None
            else DEFAULT_MAX_COST_USD.get(plan.tier)
        )
        self.spent = 0.0
        self.admitted = 0
        self.refused = 0

    def refuse_total(self, total: float, objects: int) -> None:
        """Estimate first: refuse the whole restore before any request if it costs too much."""
        if self.limit is not None and total > self.limit:
            raise CostCeilingError(
                f"{self.board.where}: restoring {objects:,} objects with {self.tier} would cost "
                f"about ${total:,.2f}, above the ceiling of ${self.limit:,.2f}; nothing was "
                "requested. Pass a higher max_cost_usd to go ahead.",
                {str(ObjectStatus.ARCHIVED): objects},
            )

    def admit(
        self, batches: Iterator[RequestBatch], ledger: LedgerWriter
    ) -> Iterator[RequestBatch]:
        for batch in batches:
            self.board.publish()
            objects, nbytes = batch.classes
            cost = estimate(self.tier, objects, nbytes).total_cost
            if not self.refused and (self.limit is None or self.spent + cost <= self.limit):
                self.spent += cost
                self.admitted += len(batch.objects)
                yield batch
                continue
            if not self.refused:
                run_logger().error(
                    "%s: stopping requests at the cost ceiling of $%.2f ($%.2f requested; the "
                    "next batch would add $%.2f); listing on to state the whole cost",
                    self.board.where,
                    self.limit,
                    self.spent,
                    cost,
                )
            self.refused += len(batch.objects)
            for c in batch.objects:
                ledger.add(c, ObjectStatus.ARCHIVED, "not requested: above the cost ceiling")

    def stop_message(self, total: float) -> str:
        return (
            f"{self.board.where}: stopped at the cost ceiling of ${self.limit:,.2f}: "
            f"{self.admitted:,} objects requested for about ${self.spent:,.2f}; "
            f"{self.refused:,} more were not requested (in the ledger as archived). "
            f"The whole restore would cost about ${total:,.2f}: run again with max_cost_usd "
            "at least that to request the rest (what was requested is not requested again)."
        )


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
