"""One polling sensor for whatever finishes later: S3 restores, vault jobs, Batch Operations jobs.

Prefect has no sensors; this is the loop a task runs to hold downstream work. The caller
owns the set of pending things and hands in a ``check`` that looks at them once, forgets
those that finished and reports a :class:`Look`. The sensor backs off between
``poll_interval`` and ``max_poll_interval``, keeps one progress artifact up to date, logs
progress, and fails after ``timeout`` with counts by status. It runs inside one task
whatever the number of items: never one task run per item.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tasks.core.errors import SensorTimeout
from tasks.core.log import run_logger


@dataclass
class Look:
    """What one check of the pending items found."""

    finished: dict[str, int] = field(default_factory=dict)  # left pending, by status
    pending: int = 0  # still pending after this look
    requests: int = 0  # requests the look made
    problems: list[str] = field(default_factory=list)  # a sample of what went wrong


@dataclass(frozen=True)
class Backoff:
    """How often to look and how long to wait in all, in seconds."""

    poll_interval: float = 60.0
    max_poll_interval: float = 1800.0
    timeout: float = 60 * 3600.0


@dataclass
class Waited:
    """What the wait saw: finished items by status, looks and requests made."""

    counts: dict[str, int]
    polls: int = 0
    requests: int = 0
    seconds: float = 0.0


class _Progress:
    """One Prefect progress artifact per wait (nothing outside a run)."""

    def __init__(self, key: str | None, description: str) -> None:
        self.id = None
        if key is None:
            return
        from prefect.artifacts import create_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() or TaskRunContext.get():
            self.id = create_progress_artifact(progress=0.0, key=key, description=description)

    def update(self, percent: float) -> None:
        if self.id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.id, progress=round(percent, 2))


def wait_until_done(
    check: Callable[[], Look],
    *,
    total: int,
    pending: int,
    backoff: Backoff,
    statuses: Sequence[str] = ("ready", "error"),
    pending_status: str = "in-progress",
    noun: str = "items",
    error: type[SensorTimeout] = SensorTimeout,
    artifact_key: str | None = None,
    description: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """Look at the pending items until none is left; raise ``error`` after the timeout.

    ``total`` is how many items the progress counts (finished before the wait included),
    ``pending`` how many are pending now. ``statuses`` are always reported, zero or not.
    """
    log = run_logger()
    counts: Counter = Counter(dict.fromkeys(statuses, 0))
    progress = _Progress(artifact_key, description or f"{noun} finished")
    started = clock()
    interval = backoff.poll_interval
    polls = requests = 0
    done_before = total - pending
    while pending:
        elapsed = clock() - started
        if elapsed >= backoff.timeout:
            report = {**counts, pending_status: pending}
            raise error(
                f"{pending} of {total} {noun} still {pending_status.replace('-', ' ')} after "
                f"{backoff.timeout:.0f} s ("
                + ", ".join(f"{n} {s}" for s, n in counts.items())
                + ")",
                dict(report),
            )
        sleep(min(interval, max(0.0, backoff.timeout - elapsed)))
        interval = min(interval * 2, backoff.max_poll_interval)
        look = check()
        polls += 1
        requests += look.requests
        counts.update(look.finished)
        pending = look.pending
        finished = done_before + sum(counts.values())
        progress.update(100.0 * finished / total if total else 100.0)
        log.info(
            "%s: %d of %d finished (%s), %d %s",
            noun,
            finished,
            total,
            ", ".join(f"{n} {s}" for s, n in counts.items()),
            pending,
            pending_status,
        )
        for problem in look.problems[:5]:
            log.warning("%s", problem)
    progress.update(100.0)
    return Waited(dict(counts), polls, requests, clock() - started)
