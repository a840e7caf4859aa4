"""Statuses as enums: what a row or an object can be, spelt once.

They are ``StrEnum`` members, so they compare equal to their strings, print as them and
travel through JSON, CSV ledgers and Prefect artifacts as plain text.
"""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """The outcome of one item of a run (a plate, a vault archive)."""

    ARCHIVED = "archived"
    RESTORED = "restored"
    THAWED = "thawed"
    SKIPPED = "skipped"
    EMPTY = "empty"
    FAILED = "failed"
    DRY_RUN = "dry-run"


class ObjectStatus(StrEnum):
    """Where one object stands on its way back from an archive tier."""

    NOT_ARCHIVED = "not-archived"  # readable as it is, no restore needed
    RESTORED = "restored"  # a restored copy is readable
    IN_PROGRESS = "in-progress"  # a restore is under way
    ARCHIVED = "archived"  # needs a restore request
    REQUESTED = "requested"  # request accepted (202)
    READY = "ready"  # seen readable by the sensor
    ERROR = "error"


#: Objects whose restore is under way (the sensor watches them).
PENDING = (ObjectStatus.REQUESTED, ObjectStatus.IN_PROGRESS)
