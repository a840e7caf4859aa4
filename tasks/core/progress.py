"""A progress artifact for a stream of requests: objects done, and the pace S3 allows.

While a run sends thousands of requests a second, the Prefect UI shows how far it is
(percent of the objects known so far), how many requests a second it sends and how many
S3 answered ``SlowDown``: the figures that say whether a run holds S3's ceiling or is held
below it. Nothing is published outside a flow run.
"""

from __future__ import annotations

import threading
import time

from tasks.core.pace import rate_line

#: Seconds between two updates of the artifact.
PUSH_SECONDS = 2.0


class RequestBoard:
    """Objects done of ``total``, requests sent and throttled, on one progress artifact."""

    def __init__(self, key: str, noun: str, total: int = 0) -> None:
        self.key, self.noun, self.total = key, noun, total
        self.done = self.sent = self.throttled = 0
        self.began = time.monotonic()
        self._pushed = 0.0
        self._id = None
        self._lock = threading.Lock()

    def add(self, done: int, sent: int, throttled: int, total: int | None = None) -> None:
        """Count what finished; publish at most every :data:`PUSH_SECONDS`."""
        with self._lock:
            self.done += done
            self.sent += sent
            self.throttled += throttled
            if total is not None:
                self.total = total
            now = time.monotonic()
            if now - self._pushed < PUSH_SECONDS:
                return
            self._pushed = now
        self.publish()

    def line(self) -> str:
        """``1,200 of 10,000 objects requested; 96.3 requests/s; 4 throttled (0.3 %)``."""
        of = f" of {self.total:,}" if self.total else ""
        rate = rate_line(self.sent, self.throttled, time.monotonic() - self.began)
        return f"{self.done:,}{of} {self.noun}; {rate}"

    def publish(self, final: bool = False) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if not (FlowRunContext.get() or TaskRunContext.get()):
            return
        percent = 100.0 if final or not self.total else min(100.0, 100 * self.done / self.total)
        if self._id is None:
            self._id = create_progress_artifact(
                progress=round(percent, 2), key=self.key, description=self.line()
            )
        else:
            update_progress_artifact(self._id, progress=round(percent, 2), description=self.line())
