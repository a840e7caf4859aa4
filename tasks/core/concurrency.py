"""Bounded fan-out: a thread pool fed from an iterator with a cap on work in flight.

A plain ``executor.map`` over a million keys submits them all at once; here
the iterator is drawn only as results come back, so memory stays flat however
long it is (the same backpressure s3transfer uses for its transfers).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M")


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, in_flight: int | None = None
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, ``workers`` at a time and at most ``in_flight``
    (default ``workers * 4``) drawn and not yet yielded, in completion order
    (:func:`unordered_map` without the items)."""
    for _, result in unordered_map(fn, items, workers, ahead=in_flight):
        yield result


def unordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    ahead: int | None = None,
    weight: Callable[[T], int] | None = None,
    budget: int | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` for every item as each call finishes, ``workers`` at a time,
    with at most ``ahead`` items (default ``workers * 4``) drawn and not yet yielded; with
    ``weight`` and ``budget``, also at most ``budget`` of weight (bytes, say), at least one
    item whatever it weighs. ``pool`` runs the calls on an executor the caller keeps (it
    then bounds the calls at once, not ``workers``).

    Completion order, not the order of ``items``: one slow answer (S3's tail latencies are
    several times its median) holds up nothing behind it, so the calls in flight stay at
    the window, not at the ones that happen to precede the slowest.

    Each finished call hands itself over on a queue: waiting on the whole set of calls in
    flight for the first to finish would cost a lock per call in flight per result, a tenth
    of the client's time at thousands of small requests a second.
    The first exception stops new submissions, cancels what is queued, waits for what is
    running and is raised; a consumer that stops early does the same.
    """
    limit = max(ahead or workers * 4, 1)
    cap = budget if budget is not None and weight is not None else None
    source = iter(items)
    finished: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
    pending: dict[Future[R], T] = {}
    held = 0
    executor = pool or ThreadPoolExecutor(max_workers=workers)
    try:
        while True:
            while len(pending) < limit and (cap is None or held < cap or not pending):
                item = next(source, _END)
                if item is _END:
                    break
                future = executor.submit(fn, item)  # type: ignore[arg-type]
                pending[future] = item  # type: ignore[assignment]
                held += weight(item) if cap is not None else 0  # type: ignore[misc,arg-type]
                future.add_done_callback(finished.put)
            if not pending:
                return
            future = finished.get()
            item = pending.pop(future)
            held -= weight(item) if cap is not None else 0  # type: ignore[misc]
            yield item, future.result()
    finally:
        for other in pending:
            other.cancel()
        wait(pending)
        if pool is None:
            executor.shutdown(wait=True)


_END = object()


class Prefetched(Iterator[T]):
    """``items`` in order, drawn by a thread of its own up to ``depth`` ahead of the consumer,
    from the moment it is made (not from the first ``next``): several listings made at once
    wait on the network at the same time instead of in turn.

    An exception in the producer is raised in the consumer; :meth:`close` (or the end of the
    items, or leaving a ``with`` block) stops the producer."""

    def __init__(self, items: Iterable[T], depth: int = 2) -> None:
        self._ahead: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._items = items
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _offer(self, entry: tuple) -> bool:
        """Queue ``entry`` once there is room; False if the consumer stopped first."""
        while not self._stop.is_set():
            try:
                self._ahead.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._offer((item, None)):
                    return
            outcome: tuple = (_END, None)
        except BaseException as exc:  # handed to the consumer
            outcome = (_END, exc)
        finally:
            ending = getattr(self._items, "close", None)
            if ending is not None:  # a generator's own clean-up, in the thread that ran it
                ending()
        self._offer(outcome)

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item, exc = self._ahead.get()
        if item is _END:
            self.close()
            if exc is not None:
                raise exc
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer and wait for its thread."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


def prefetch(items: Iterable[T], depth: int = 2) -> Prefetched[T]:
    """``items`` drawn ahead by a thread of their own, started now (see :class:`Prefetched`).

    For listings: two listings merged key by key wait on the network at the same time
    instead of in turn."""
    return Prefetched(items, depth)


def together(*calls: Callable[[], R], at_most: int | None = None) -> list[R]:
    """Run ``calls`` at once, a thread each (``at_most`` at a time), and return their results
    in order: independent round trips (a tarball's two sidecars, a plate's listings) cost one
    round trip, not one each. Each call runs in a copy of the caller's context (a Prefect
    task called there is the caller's child). Once a call fails, those not yet started
    never start; every started call ends before the first exception is raised."""
    workers = max(1, min(len(calls), at_most or len(calls)))
    failed = threading.Event()

    def run(call: Callable[[], R]) -> R:
        if failed.is_set():  # only a call that waited for a thread can see this
            raise CancelledError
        try:
            return call()
        except BaseException:
            if workers < len(calls):
                failed.set()
            raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="together") as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, call) for call in calls]
    return [future.result() for future in futures]  # calls start in order: a failure first


def pipelined(
    items: Iterable[T], first: Callable[[T], M], then: Callable[[M], R], overlap: bool = True
) -> list[R]:
    """``then(first(item))`` for every item, in order, and the results in order. With
    ``overlap``, ``first`` of the next item runs while ``then`` of this one does (on a thread
    of its own, in a copy of the caller's context): a plate's next bundle downloads while the
    last one's tarball uploads. Stops at the first failure: no item's ``then`` starts once
    an earlier one failed, and whatever runs ends before the exception is raised."""
    if not overlap:
        return [then(first(item)) for item in items]
    results: list[R] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipelined") as pool:
        running: Future[R] | None = None
        for item in items:
            made = first(item)
            if running is not None:
                results.append(running.result())
            running = pool.submit(contextvars.copy_context().run, then, made)
        if running is not None:
            results.append(running.result())
    return results


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last may be shorter), drawn lazily from ``items``."""
    source = iter(items)
    while batch := list(islice(source, size)):
        yield batch
