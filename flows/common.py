"""Orchestration helpers shared by the flows."""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterable
from typing import Any

from prefect.futures import PrefectFuture, as_completed

from tasks.errors import PlatesFailedError
from tasks.layout import check_name
from tasks.plates import Plate, read_plates
from tasks.runlog import run_logger

#: Local folder for staging, listings and ledgers ($COLDFLOW_SCRATCH, else the temp folder).
DEFAULT_SCRATCH = os.environ.get(
    "COLDFLOW_SCRATCH", os.path.join(tempfile.gettempdir(), "coldflow")
)

__all__ = [
    "DEFAULT_SCRATCH",
    "raise_if_failed",
    "read_batch_plates",
    "run_logger",
    "submit_bounded",
]


def read_batch_plates(plates_csv: str, project_name: str, batch_id: str) -> list[Plate]:
    """The plates of one project and batch, every name checked before any S3 call."""
    check_name("project_name", project_name)
    check_name("batch_id", batch_id)
    return read_plates(plates_csv)


def submit_bounded(task: Any, items: Iterable[Any], limit: int, **kwargs: Any) -> list[Any]:
    """Run ``task(item, **kwargs)`` for every item with at most ``limit`` in flight.

    Works with any task runner (threads, Dask): a new item is submitted as soon
    as one finishes. Returns the final states in the order of ``items``.
    """
    queue = deque(enumerate(items))
    running: dict[PrefectFuture, int] = {}
    finished: dict[int, PrefectFuture] = {}
    while queue or running:
        while queue and len(running) < limit:
            index, item = queue.popleft()
            running[task.submit(item, **kwargs)] = index
        done = next(as_completed(list(running)))
        done.wait()
        finished[running.pop(done)] = done
    return [finished[i] for i in sorted(finished)]


def raise_if_failed(results: list[dict], ok: set[str], what: str) -> None:
    """Fail the run, after every plate had its turn, when any plate's status is not ``ok``;
    the error carries every row so callers and the UI see what was done."""
    bad = [r for r in results if r["status"] not in ok]
    if bad:
        raise PlatesFailedError(
            f"{len(bad)} of {len(results)} plates not {what}: "
            + "; ".join(f"{r['plate_id']} {r['status']}: {r['message']}" for r in bad),
            results,
        )
