"""Storage, request and restore prices, durations and allowed tiers: data, in one place, dated;
the archive and restore estimates both read it.

Prices are us-east-1 retrieval prices from secondary sources; verify them
against the AWS price list before relying on an estimate. Durations are AWS's
published ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11 (us-east-1, secondary sources: verify before relying on them)"
GB = 1000**3

#: Storage classes whose objects must be restored before they can be read, and the
#: Intelligent-Tiering archive access tiers (``x-amz-archive-status``).
NEEDS_DAYS = ("GLACIER", "DEEP_ARCHIVE")
IT_ARCHIVE_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")
TIERS = ("Expedited", "Standard", "Bulk")
#: The cost ceiling of a prefix restore when none is given, by tier, in USD; None: no ceiling.
#: Bulk carries no retrieval fee for Glacier Flexible Retrieval and Intelligent-Tiering (and
#: $2.50 per TB from Deep Archive); Standard and Expedited are priced per GB and per request.
DEFAULT_MAX_COST_USD: dict[str, float | None] = {
    "Expedited": 100.0,
    "Standard": 100.0,
    "Bulk": None,
}

#: Storage, per GB-month, by storage class (Intelligent-Tiering at its frequent access tier).
STORAGE_PER_GB_MONTH = {
    "STANDARD": 0.023,
    "INTELLIGENT_TIERING": 0.023,
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}
#: PUT, COPY, POST and LIST requests, per 1,000, by the storage class written.
PUT_PER_1000 = {
    "STANDARD": 0.005,
    "INTELLIGENT_TIERING": 0.005,
    "STANDARD_IA": 0.01,
    "ONEZONE_IA": 0.01,
    "GLACIER_IR": 0.02,
    "GLACIER": 0.03,
    "DEEP_ARCHIVE": 0.05,
}
#: Days a class charges for at least, however soon the object is deleted.
MIN_STORAGE_DAYS = {
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}


@dataclass(frozen=True)
class Retrieval:
    """What one tier costs and takes for one archive class."""

    per_gb: float
    per_1000_requests: float
    hours_min: float
    hours_max: float

    @property
    def duration(self) -> str:
        if self.hours_max < 1:
            return f"{self.hours_min * 60:.0f}-{self.hours_max * 60:.0f} min"
        if self.hours_min == 0:
            return f"up to {self.hours_max:g} h"
        return f"{self.hours_min:g}-{self.hours_max:g} h"


_FLEXIBLE = {
    "Expedited": Retrieval(0.03, 10.00, 1 / 60, 5 / 60),
    "Standard": Retrieval(0.01, 0.05, 3, 5),
    "Bulk": Retrieval(0.0, 0.0, 5, 12),
}
_DEEP = {
    "Standard": Retrieval(0.02, 0.10, 0, 12),
    "Bulk": Retrieval(0.0025, 0.025, 0, 48),
}
#: Intelligent-Tiering charges no retrieval fee for Standard and Bulk restores.
_IT_ARCHIVE = {
    "Expedited": Retrieval(0.03, 10.00, 1 / 60, 5 / 60),
    "Standard": Retrieval(0.0, 0.0, 3, 5),
    "Bulk": Retrieval(0.0, 0.0, 5, 12),
}
_IT_DEEP = {
    "Standard": Retrieval(0.0, 0.0, 0, 12),
    "Bulk": Retrieval(0.0, 0.0, 0, 48),
}

#: (archive class, tier) -> Retrieval; a missing pair is a tier the class doesn't offer.
RETRIEVAL: dict[str, dict[str, Retrieval]] = {
    "GLACIER": _FLEXIBLE,
    "DEEP_ARCHIVE": _DEEP,
    "ARCHIVE_ACCESS": _IT_ARCHIVE,
    "DEEP_ARCHIVE_ACCESS": _IT_DEEP,
}


def tier_allowed(archive_class: str, tier: str) -> bool:
    return tier in RETRIEVAL.get(archive_class, {})


@dataclass
class Estimate:
    """Cost and time of restoring a set of objects with one tier."""

    tier: str
    objects: dict[str, int]
    bytes: dict[str, int]
    cost: dict[str, float]
    duration: dict[str, str]

    @property
    def total_cost(self) -> float:
        return sum(self.cost.values())

    def as_markdown(self) -> str:
        rows = [
            f"| {c} | {self.objects[c]:,} | {self.bytes[c] / GB:,.2f} | "
            f"${self.cost[c]:,.2f} | {self.duration[c]} |"
            for c in self.objects
        ]
        return "\n".join(
            [
                f"### Restore estimate, tier {self.tier}",
                "",
                "| archive class | objects | GB | cost | time |",
                "|---|---:|---:|---:|---|",
                *rows,
                "",
                f"**Total: ${self.total_cost:,.2f}** for {sum(self.objects.values()):,} objects. "
                f"Prices as of {PRICES_AS_OF}.",
            ]
        )


def estimate(tier: str, objects: dict[str, int], nbytes: dict[str, int]) -> Estimate:
    """Estimate a restore from object counts and bytes per archive class (classes whose tier
    is not offered are costed at Standard, as the fallback would request them)."""
    cost, duration = {}, {}
    for cls, count in objects.items():
        table = RETRIEVAL[cls]
        r = table.get(tier) or table["Standard"]
        cost[cls] = nbytes.get(cls, 0) / GB * r.per_gb + count / 1000 * r.per_1000_requests
        duration[cls] = r.duration
    return Estimate(tier, dict(objects), dict(nbytes), cost, duration)


#: S3 Glacier *vault* retrievals (the pre-S3 Glacier API), per tier; same date and sources.
#: Vault jobs finish in about these times; their output stays downloadable for 24 h.
VAULT_RETRIEVAL: dict[str, Retrieval] = {
    "Expedited": Retrieval(0.03, 10.00, 1 / 60, 5 / 60),
    "Standard": Retrieval(0.01, 0.05, 3, 5),
    "Bulk": Retrieval(0.0025, 0.025, 5, 12),
}


def estimate_vault(tier: str, archives: int, nbytes: int) -> Estimate:
    """Cost and time of retrieving ``archives`` vault archives totalling ``nbytes`` bytes."""
    r = VAULT_RETRIEVAL[tier]
    cost = nbytes / GB * r.per_gb + archives / 1000 * r.per_1000_requests
    return Estimate(
        tier, {"vault": archives}, {"vault": nbytes}, {"vault": cost}, {"vault": r.duration}
    )
