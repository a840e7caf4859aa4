"""How a restore is requested and waited for, and the checks made before any request."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.core.errors import InputError
from tasks.core.sensor import Backoff
from tasks.restore.inventory import Inventory
from tasks.restore.pricing import GB, tier_allowed

#: Expedited above these needs allow_expensive=True.
EXPENSIVE_OBJECTS = 1000
EXPENSIVE_GB = 100.0


@dataclass(frozen=True)
class RequestPlan:
    """The knobs both restore flows share (small and picklable)."""

    tier: str = "Standard"
    days: int = 7
    allow_expensive: bool = False
    expensive_objects: int = EXPENSIVE_OBJECTS
    expensive_gb: float = EXPENSIVE_GB
    parallel_batches: int = 4
    request_workers: int = 64
    backoff: Backoff = field(default_factory=Backoff)
    credentials_block: str | None = None
    #: USD; None: the tier's default (``pricing.DEFAULT_MAX_COST_USD``).
    max_cost_usd: float | None = None
    #: RestoreObject requests a second this run sends at most (None: the pace decides).
    max_requests_per_second: float | None = None


def refuse_unwise_tier(plan: RequestPlan, inventory: Inventory, cost: float) -> None:
    """Refuse, before any request, a tier a class doesn't offer or an expensive Expedited."""
    refused = {c: n for c, n in inventory.to_request.items() if not tier_allowed(c, plan.tier)}
    if refused:
        raise InputError(
            f"{plan.tier} retrieval is not offered for "
            + ", ".join(f"{c} ({n} objects)" for c, n in refused.items())
            + "; use Standard or Bulk (or filter those objects out)"
        )
    n = sum(inventory.to_request.values())
    gb = sum(inventory.to_request_bytes.values()) / GB
    if (
        plan.tier == "Expedited"
        and not plan.allow_expensive
        and (n > plan.expensive_objects or gb > plan.expensive_gb)
    ):
        raise InputError(
            f"Expedited on {n:,} objects ({gb:,.1f} GB) would cost about ${cost:,.2f}; "
            "pass allow_expensive=True to go ahead, or use Standard or Bulk"
        )
