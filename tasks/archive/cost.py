"""What archiving a plate costs and saves: monthly storage of the tarballs in the chosen class
against what the hot copies cost now, the upload's requests, the class's minimum storage
duration charge, and what bringing the plate back would cost (Standard and Bulk).

Prices come from the one dated price table (:mod:`tasks.restore.pricing`). Tarball sizes are
not known before they are built; the estimate takes the sources' size, an upper bound (images
barely compress, CSVs and SQLite do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tasks.restore.pricing import (
    GB,
    MIN_STORAGE_DAYS,
    PRICES_AS_OF,
    PUT_PER_1000,
    RETRIEVAL,
    STORAGE_PER_GB_MONTH,
    estimate,
)

#: Requests a bundle's upload makes besides its parts: create, complete, sidecars, listings.
OTHER_PUTS_PER_BUNDLE = 6


@dataclass(frozen=True)
class ArchiveEstimate:
    """One plate's figures, in US dollars."""

    hot_monthly: float
    archive_monthly: float
    upload_requests: float
    minimum_duration: float
    restore_standard: float
    restore_bulk: float

    def as_row(self) -> dict[str, float]:
        return {
            "hot $/month": round(self.hot_monthly, 6),
            "archive $/month": round(self.archive_monthly, 6),
            "upload $": round(self.upload_requests, 6),
            "minimum duration $": round(self.minimum_duration, 6),
            "restore Standard $": round(self.restore_standard, 6),
            "restore Bulk $": round(self.restore_bulk, 6),
        }


def estimate_archive(
    hot_bytes: Mapping[str, int], storage_class: str, bundles: int, part_size: int
) -> ArchiveEstimate:
    """Figures for one plate from its bytes by current storage class."""
    total = sum(hot_bytes.values())
    hot = sum(
        n / GB * STORAGE_PER_GB_MONTH.get(c, STORAGE_PER_GB_MONTH["STANDARD"])
        for c, n in hot_bytes.items()
    )
    monthly = total / GB * STORAGE_PER_GB_MONTH[storage_class]
    parts = -(-total // part_size) if total else 0
    puts = parts + bundles * OTHER_PUTS_PER_BUNDLE
    minimum = monthly * MIN_STORAGE_DAYS.get(storage_class, 0) / 30
    restore = {}
    for tier in ("Standard", "Bulk"):
        if storage_class in RETRIEVAL:
            restore[tier] = estimate(
                tier, {storage_class: bundles}, {storage_class: total}
            ).total_cost
        else:
            restore[tier] = 0.0
    return ArchiveEstimate(
        hot,
        monthly,
        puts / 1000 * PUT_PER_1000[storage_class],
        minimum,
        restore["Standard"],
        restore["Bulk"],
    )


def as_markdown(rows: list[dict], storage_class: str) -> str:
    """The run's estimate: one row per plate and the total."""
    keys = [
        "hot $/month",
        "archive $/month",
        "upload $",
        "minimum duration $",
        "restore Standard $",
        "restore Bulk $",
    ]
    lines = [
        f"### Archive estimate ({storage_class})",
        "",
        "| plate | GiB | " + " | ".join(keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for r in rows:
        lines.append(
            f"| {r['plate']} | {r['bytes'] / 1024**3:,.2f} | "
            + " | ".join(f"{r.get(k, 0):,.4f}" for k in keys)
            + " |"
        )
    total = {k: sum(r.get(k, 0) for r in rows) for k in keys}
    lines.append(
        f"| **total** | {sum(r['bytes'] for r in rows) / 1024**3:,.2f} | "
        + " | ".join(f"**{total[k]:,.4f}**" for k in keys)
        + " |"
    )
    lines += [
        "",
        f"Tarballs taken at their sources' size (an upper bound). Prices as of {PRICES_AS_OF}.",
    ]
    return "\n".join(lines)


def versioned_note(choice: str | None, versioning: str | None, rows: list[dict]) -> str:
    """What deleting the sources does to the bill on a versioned live bucket, for the
    estimate: with delete markers every archived byte stays billed as a noncurrent version;
    with purge the archived versions go and older versions already there stay."""
    if versioning is None or choice is None:
        return ""
    nbytes = sum(r["bytes"] for r in rows)
    monthly = sum(r.get("hot $/month", 0) for r in rows)
    if choice == "delete-marker":
        return (
            f"\n\n**Versioned live bucket ({versioning}), delete markers:** the archived "
            f"{nbytes / 1024**3:,.2f} GiB stay billed as noncurrent versions "
            f"(about ${monthly:,.4f}/month) until a lifecycle rule expires them."
        )
    return (
        f"\n\n**Versioned live bucket ({versioning}), purge:** the archived versions "
        f"({nbytes / 1024**3:,.2f} GiB) are deleted by VersionId; older versions already under "
        "the plates' prefixes are kept and counted in each plate's row."
    )
