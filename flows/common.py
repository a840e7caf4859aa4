"""Orchestration helpers shared by the flows: inputs checked up front, bounded submission,
rows from futures, and failing a run only after every item had its turn.

Every flow module imports this one, and with it how a flow run ends (tasks/core/engine.py):
Prefect's heartbeat thread stops at once, and the process skips a last garbage sweep on exit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prefect.futures import PrefectFuture, as_completed

from tasks.core import engine
from tasks.core.errors import ItemFailedError, ItemsFailedError, PlatesFailedError, describe
from tasks.core.log import run_logger
from tasks.formats.layout import check_name
from tasks.formats.plates_csv import Plate, read_plates

#: Local folder for staging, listings and ledgers ($COLDFLOW_SCRATCH, else the temp folder).
DEFAULT_SCRATCH = os.environ.get(
    "COLDFLOW_SCRATCH", os.path.join(tempfile.gettempdir(), "coldflow")
)

engine.install()

__all__ = [
    "DEFAULT_SCRATCH",
    "raise_if_failed",
    "read_batch_plates",
    "rows_of",
    "run_logger",
    "stream_bounded",
    "submit_bounded",
]


def read_batch_plates(
    plates_csv: str, project_name: str, batch_id: str, credentials_block: str | None = None
) -> list[Plate]:
    """The plates of one project and batch, every name checked before any S3 call."""
    check_name("project_name", project_name)
    check_name("batch_id", batch_id)
    return read_plates(plates_csv, credentials_block)


def stream_bounded(
    task: Any, items: Iterable[Any], limit: int, **kwargs: Any
) -> Iterator[tuple[Any, PrefectFuture]]:
    """Run ``task(item, **kwargs)`` for every item with at most ``limit`` in flight, and yield
    (item, finished future) as they finish.

    Works with any task runner (threads, Dask). ``items`` is drawn only as slots free up,
    so a stream of a million batches never sits in memory.
    """
    source = iter(items)
    running: dict[PrefectFuture, Any] = {}
    exhausted = False
    while True:
        while not exhausted and len(running) < limit:
            item = next(source, _END)
            if item is _END:
                exhausted = True
            else:
                running[task.submit(item, **kwargs)] = item
        if not running:
            return
        done = next(as_completed(list(running)))
        done.wait()
        yield running.pop(done), done


_END = object()


def submit_bounded(
    task: Any,
    items: Iterable[Any],
    limit: int,
    on_done: Callable[[Any, PrefectFuture], None] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Run ``task(item, **kwargs)`` for every item with at most ``limit`` in flight; returns
    the finished futures in the order of ``items`` (for a few hundred items at most).
    ``on_done(item, future)`` is called as each one finishes (progress)."""
    indexed = list(enumerate(items))
    finished = {}
    for (index, item), future in stream_bounded(_Indexed(task), indexed, limit, **kwargs):
        finished[index] = future
        if on_done is not None:
            on_done(item, future)
    return [finished[i] for i, _ in indexed]


class _Indexed:
    """Submits ``(index, item)`` pairs as ``task(item)``, so results can be put back in order."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def submit(self, pair: tuple[int, Any], **kwargs: Any) -> PrefectFuture:
        return self.task.submit(pair[1], **kwargs)


def rows_of(
    futures: Sequence[Any], items: Sequence[Any], failed_row: Callable[[Any, str], dict]
) -> list[dict]:
    """One row per item from its future: the task's result (a dataclass with ``as_dict`` or a
    dict), the row a failed item carried (:class:`ItemFailedError`), or ``failed_row(item,
    reason)`` for anything else that went wrong."""
    rows = []
    for future, item in zip(futures, items, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, ItemFailedError):
            rows.append(outcome.row)
        elif isinstance(outcome, BaseException):
            rows.append(failed_row(item, describe(outcome)))
        elif hasattr(outcome, "as_dict"):
            rows.append(outcome.as_dict())
        else:
            rows.append(outcome)
    return rows


def raise_if_failed(
    results: list[dict],
    ok: set[str],
    what: str,
    noun: str = "plates",
    id_field: str = "plate_id",
    error: type[ItemsFailedError] = PlatesFailedError,
) -> None:
    """Fail the run, after every item had its turn, when any item's status is not ``ok``;
    the error carries every row so callers and the UI see what was done."""
    bad = [r for r in results if r["status"] not in ok]
    if bad:
        raise error(
            f"{len(bad)} of {len(results)} {noun} not {what}: "
            + "; ".join(f"{r[id_field]} {r['status']}: {r['message']}" for r in bad),
            results,
        )
