"""One progress artifact per archive run: source bytes archived out of the total.

Plates report each finished bundle to the run's tracker when they run in the flow's process
(the default thread pool); plates on other workers (Dask) are counted when they finish.
"""

from __future__ import annotations

import threading
import time
from typing import Any

_RUNS: dict[str, RunProgress] = {}
_lock = threading.Lock()


class RunProgress:
    """Bytes done of a known total, pushed to a Prefect progress artifact (at most 1/s)."""

    def __init__(self, key: str, total: int, artifact_id: Any = None) -> None:
        self.key, self.total, self.artifact_id = key, total, artifact_id
        self.done: dict[str, int] = {}
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
        return cls(key, total, artifact)

    def add(self, tag: str, nbytes: int, force: bool = False) -> None:
        with self._lock:
            self.done[tag] = self.done.get(tag, 0) + nbytes
            now = time.monotonic()
            if not force and now - self._pushed < 1.0:
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

            update_progress_artifact(self.artifact_id, progress=round(percent, 2))


def report(key: str | None, tag: str, nbytes: int) -> None:
    """A plate finished a bundle of ``nbytes`` source bytes (no-op outside the flow's process)."""
    if key is None:
        return
    with _lock:
        run = _RUNS.get(key)
    if run is not None:
        run.add(tag, nbytes)
