"""One run at a time per plate: a Prefect global concurrency limit of 1 for each plate."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

#: How long a run waits for another run of the same plate before failing.
LOCK_TIMEOUT_SECONDS = 6 * 3600.0
#: A run renews its hold on a plate while it lives; a run that was killed loses it this long
#: after its last renewal (the server's repossessor frees the slot), so a re-run can go on.
LEASE_SECONDS = float(os.environ.get("COLDFLOW_LOCK_LEASE_SECONDS", "300"))


def lock_name(kind: str, tag: str) -> str:
    """A limit name for one plate: readable, and unique even after unsafe characters go."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", tag)[:80]
    return f"coldflow-{kind}-{safe}-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the limit if it doesn't exist: a missing limit would not hold anyone back."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):  # another run created it meanwhile
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit)
            )


@contextmanager
def plate_lock(
    kind: str, tag: str, timeout_seconds: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the plate's slot while archiving (or restoring) it; other runs wait their turn."""
    name = lock_name(kind, tag)
    ensure_limit(name)
    with concurrency(
        name, occupy=1, timeout_seconds=timeout_seconds, strict=True, lease_duration=LEASE_SECONDS
    ):
        yield
