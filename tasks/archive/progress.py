"""One progress artifact per archive run: source bytes archived out of the total.

Plates report as their bundles move (each object staged, tarred, each part uploaded: see
:class:`BundleProgress`) when they run in the flow's process (the default thread pool);
plates on other workers (Dask) are counted when they finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tasks.core.pace import Tally

T = TypeVar("T")

#: Seconds between two updates of the progress artifact.
PUSH_SECONDS = 1.0
_RUNS: dict[str, RunProgress] = {}
_lock = threading.Lock()


class RunProgress:
    """Bytes done of a known total, pushed to a Prefect progress artifact (at most every
    :data:`PUSH_SECONDS`)."""

    def __init__(
        self, key: str, total: int, artifact_id: Any = None, description: str = ""
    ) -> None:
        self.key, self.total, self.artifact_id = key, total, artifact_id
        self.description = description
        self.done: dict[str, int] = {}
        self.paces = (Tally("read"), Tally("write"))
        self._pushed = 0.0
        self._lock = threading.Lock()
        with _lock:
            _RUNS[key] = self

    @classmethod
    def start(cls, key: str, total: int, description: str) -> RunProgress:
        from prefect.artifacts import create_progress_artifact

        artifact = create_progress_artifact(
            progress=0.0, key="archive-progress", description=description
        )
        return cls(key, total, artifact, description)

    def add(self, tag: str, nbytes: int, force: bool = False) -> None:
        with self._lock:
            self.done[tag] = self.done.get(tag, 0) + nbytes
            now = time.monotonic()
            if not force and now - self._pushed < PUSH_SECONDS:
                return
            self._pushed = now
            percent = 100.0 * sum(self.done.values()) / self.total if self.total else 100.0
        self._push(min(percent, 100.0))

    def finish_plate(self, tag: str, nbytes: int) -> None:
        """A plate is over: count what it did not report (it ran elsewhere, or was skipped)."""
        self.add(tag, max(0, nbytes - self.done.get(tag, 0)), force=True)

    def close(self) -> None:
        with _lock:
            _RUNS.pop(self.key, None)
        self._push(100.0)

    def _push(self, percent: float) -> None:
        if self.artifact_id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                self.artifact_id,
                progress=round(percent, 2),
                description=f"{self.description}: " + "; ".join(t.line() for t in self.paces),
            )


class BundleProgress:
    """A bundle's ``nbytes`` source bytes, reported as its stages move. Each stage has a share
    of them (staged: download, tar, upload a third each; streaming: the tar stream, whose
    parts upload as it goes) and reports its own units (objects' bytes, tarball bytes)."""

    def __init__(self, key: str | None, tag: str, nbytes: int) -> None:
        self.key, self.tag, self.nbytes = key, tag, nbytes
        self.reported = 0
        self._lock = threading.Lock()

    def stage(self, share: float, of: int) -> Callable[[int], None]:
        """A callback taking units done (of ``of`` in all) that reports ``share`` of the
        bundle's bytes in proportion; thread-safe (s3transfer calls it from its threads)."""
        weight = share * self.nbytes / of if of else 0.0
        carry = [0.0]

        def done(units: int) -> None:
            with self._lock:
                carry[0] += units * weight
                whole = int(carry[0])
                carry[0] -= whole
                self.reported += whole
            if whole:
                report(self.key, self.tag, whole)

        return done

    def finish(self) -> None:
        """The bundle is uploaded and verified: report whatever rounding left out."""
        with self._lock:
            rest, self.reported = max(0, self.nbytes - self.reported), self.nbytes
        report(self.key, self.tag, rest)


def counted(
    items: Iterable[T], size: Callable[[T], int], done: Callable[[int], None]
) -> Iterator[T]:
    """``items`` unchanged, calling ``done(size(item))`` once the consumer asks for the next
    one (the previous item is then written)."""
    for item in items:
        yield item
        done(size(item))


def report(key: str | None, tag: str, nbytes: int) -> None:
    """A plate archived ``nbytes`` more source bytes (no-op outside the flow's process)."""
    if key is None:
        return
    with _lock:
        run = _RUNS.get(key)
    if run is not None:
        run.add(tag, nbytes)
