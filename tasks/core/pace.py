"""One pace for S3 requests: how many are in flight, per endpoint, bucket and kind.

S3 answers ``503 SlowDown`` above its ceilings (5,500 GET/HEAD and 3,500 PUT/COPY/POST/DELETE
a second per prefix partition, 1,000 RestoreObject a second per account). A client holds a
ceiling with ceiling x latency requests in flight (Little's law), and neither figure is
known in advance on a given account, so the number in flight is found as TCP finds a
window:

- it starts at what Little's law suggests at S3's published latencies (:data:`START`);
- while answers come back clean and the limit is in use, it grows: by one per answer until
  the first ``SlowDown`` (doubling each round trip), then along CUBIC's curve (RFC 9438) in
  the seconds since the last cut: most of the way back soon, slowly near where it was cut,
  faster and faster above it (:data:`GROWTH`), never less than one more per round trip;
- a ``SlowDown`` cuts it to :data:`BACKOFF` of itself, once per round trip (answers to
  requests sent before the last cut don't cut again).

Every client :func:`tasks.core.clients.client` makes goes through it (botocore's
``before-send`` and ``needs-retry`` events, the hooks botocore's own ``adaptive`` retry mode
uses), so every thread and task of a process shares one pace per (endpoint, bucket, kind);
the pools above it only bound it. Restores share one pace per endpoint: their ceiling is
the account's. ``COLDFLOW_PACE=off`` sends unpaced (fixed pools only), ``adaptive`` leaves
the pacing to botocore's adaptive retry mode (a client-side token bucket); docs/decisions.md
says which won and by how much.

A run's own cap (``max_requests_per_second``) is a :class:`RateCap`; across runs and
workers, the Prefect global concurrency limit :data:`GLOBAL_RESTORE_LIMIT`, with slot decay,
is the account's restore budget (:class:`GlobalRate`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from tasks.core.retry import THROTTLING_CODES

#: What a kind of request starts at: ceiling x latency at S3's published figures (1,000
#: restores/s x 30 ms; 5,500 reads/s x 30 ms; 3,500 writes/s x 50 ms).
START = {"restore": 30.0, "read": 165.0, "write": 175.0}
#: The most in flight a pace allows, whatever the answers.
MOST = 2048.0
#: The share of the limit kept after a SlowDown.
BACKOFF = 0.8
#: How fast the limit comes back after a cut (CUBIC's C, requests in flight per second
#: cubed): back to where it was cut in (its share lost / C) ** (1/3) seconds, then faster
#: and faster above it. S3's ceilings are requests a second, so the time to find one again
#: is set in seconds, not round trips (at 165 in flight, one per round trip took 33 of them).
GROWTH = 0.4
#: ``aimd`` (default), ``adaptive`` (botocore's adaptive retry mode instead), ``off``.
MODE = os.environ.get("COLDFLOW_PACE", "aimd").strip().lower() or "aimd"
#: The Prefect global concurrency limit (with slot decay) every restore run takes a slot of
#: per request when it exists: the account's restore budget across runs and workers.
GLOBAL_RESTORE_LIMIT = "coldflow-restore-requests"

_WRITES = ("Put", "Copy", "Delete", "Upload", "Create", "Complete", "Abort", "Post")


def kind_of(operation: str) -> str:
    """``restore``, ``write`` or ``read``: the ceiling an operation counts against."""
    if operation == "RestoreObject":
        return "restore"
    return "write" if operation.startswith(_WRITES) else "read"


@dataclass
class Snapshot:
    """A pace's counts so far: requests answered, ``SlowDown`` answers, the limit now."""

    kind: str
    sent: int
    throttled: int
    limit: int
    in_flight: int


class Pace:
    """The limit on requests in flight for one endpoint, bucket and kind: cut on SlowDown,
    grown back along CUBIC's curve."""

    def __init__(self, kind: str, start: float | None = None) -> None:
        self.kind = kind
        self.limit = start if start is not None else START[kind]
        self.in_flight = 0
        self.sent = 0
        self.throttled = 0
        self.cut_at = 0.0  # when the limit was last cut (monotonic)
        self.peak = self.limit  # the limit when it was last cut
        self.recover = 0.0  # seconds after a cut the limit is back at peak
        self.full_at = -1.0  # when the limit was last reached
        self.probing = True  # no SlowDown yet: grow fast
        self._ready = threading.Condition(threading.Lock())

    def acquire(self) -> float:
        """Wait for a slot; returns when the request was let go (for :meth:`release`)."""
        with self._ready:
            while self.in_flight >= int(self.limit):
                self._ready.wait()
            self.in_flight += 1
            now = time.monotonic()
            if self.in_flight >= int(self.limit):
                self.full_at = now
        return now

    def release(self, sent_at: float, throttled: bool) -> None:
        """Give the slot back with what the answer said; adjust the limit."""
        with self._ready:
            self.in_flight -= 1
            self.sent += 1
            if throttled:
                self.throttled += 1
                if sent_at >= self.cut_at:  # the first SlowDown of this round trip
                    self.peak = self.limit
                    self.recover = (self.peak * (1 - BACKOFF) / GROWTH) ** (1 / 3)
                    self.limit = max(1.0, self.limit * BACKOFF)
                    self.cut_at = time.monotonic()
                    self.probing = False
            elif self.full_at >= sent_at:  # the limit bound since: there may be room above it
                self.limit = min(MOST, self._grown())
            self._ready.notify()

    def _grown(self) -> float:
        """The limit after one more clean answer: one more until the first SlowDown (it
        doubles each round trip); after one, CUBIC's curve in the seconds since the cut
        (TCP's, RFC 9438), at least one more per round trip and at most one per answer."""
        if self.probing:
            return self.limit + 1.0
        steady = self.limit + 1.0 / self.limit
        since = time.monotonic() - self.cut_at - self.recover
        curve = self.peak + GROWTH * since**3
        return max(steady, min(curve, self.limit + 1.0))

    def snapshot(self) -> Snapshot:
        with self._ready:
            return Snapshot(self.kind, self.sent, self.throttled, int(self.limit), self.in_flight)


_paces: dict[tuple[str, str, str], Pace] = {}
_paces_lock = threading.Lock()


def pace_for(endpoint: str, bucket: str, kind: str) -> Pace:
    """The process's pace for ``kind`` requests to ``bucket`` at ``endpoint`` (restores: one
    per endpoint, their ceiling is the account's)."""
    key = (endpoint, "" if kind == "restore" else bucket, kind)
    with _paces_lock:
        found = _paces.get(key)
        if found is None:
            found = _paces[key] = Pace(kind)
        return found


def totals(kind: str | None = None) -> dict[str, int]:
    """Requests answered and throttled so far by every pace of this process (of ``kind``)."""
    with _paces_lock:
        paces = list(_paces.values())
    seen = [p.snapshot() for p in paces if kind is None or p.kind == kind]
    return {
        "sent": sum(s.sent for s in seen),
        "throttled": sum(s.throttled for s in seen),
        "in_flight": sum(s.in_flight for s in seen),
        "limit": sum(s.limit for s in seen),
    }


def rate_line(sent: int, throttled: int, seconds: float, noun: str = "requests") -> str:
    """``96.3 requests/s; 4 throttled (0.3 %)``: requests a second over ``seconds`` and the
    share S3 answered SlowDown, as progress artifacts state them."""
    share = 100.0 * throttled / sent if sent else 0.0
    rate = sent / max(seconds, 1e-6)
    return f"{rate:,.1f} {noun}/s; {throttled:,} throttled ({share:.1f} %)"


class Tally:
    """What this process's paces of ``kind`` saw since the tally began: requests answered a
    second and ``SlowDown`` answers, as a line for a progress artifact. (Counts every run in
    the process; tasks on other workers report through their own.)"""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.began = time.monotonic()
        self.start = totals(kind)

    def line(self) -> str:
        now = totals(self.kind)
        done = rate_line(
            now["sent"] - self.start["sent"],
            now["throttled"] - self.start["throttled"],
            time.monotonic() - self.began,
            f"{self.kind} requests",
        )
        return f"{done}; {now['limit']:,} allowed in flight"


def reset_paces() -> None:
    """Forget every pace (tests, or after the endpoint changes)."""
    with _paces_lock:
        _paces.clear()


class _Held(threading.local):
    def __init__(self) -> None:
        self.calls: list[Pace] = []  # the pace of each call in progress (nested: STS)
        self.slot: tuple[Pace, float] | None = None


_held = _Held()


def install(client: Any) -> Any:
    """Send every request ``client`` makes through the paces (no-op unless MODE is aimd)."""
    if MODE != "aimd":
        return client
    endpoint = client.meta.endpoint_url
    events = client.meta.events

    def before_call(model: Any, context: dict, **_: Any) -> None:
        bucket = (context.get("input_params") or {}).get("Bucket") or ""
        _held.calls.append(pace_for(endpoint, bucket, kind_of(model.name)))

    def before_send(**_: Any) -> None:
        if _held.calls:
            pace = _held.calls[-1]
            _held.slot = (pace, pace.acquire())

    def needs_retry(response: Any = None, **_: Any) -> None:
        slot, _held.slot = _held.slot, None
        if slot is not None:
            slot[0].release(slot[1], _throttled(response))

    def after_call(**_: Any) -> None:
        if _held.calls:
            _held.calls.pop()

    events.register("before-call", before_call, unique_id="coldflow-pace-call")
    events.register("before-send", before_send, unique_id="coldflow-pace-send")
    events.register("needs-retry", needs_retry, unique_id="coldflow-pace-answer")
    events.register("after-call", after_call, unique_id="coldflow-pace-done")
    events.register("after-call-error", after_call, unique_id="coldflow-pace-failed")
    return client


def _throttled(response: Any) -> bool:
    """True for a ``503 SlowDown`` (or another throttling code) answer. An answer to a HEAD
    has no body, so botocore names its code by the status: a bare 503 is a SlowDown too."""
    if not response:
        return False
    http, parsed = response
    if http.status_code not in (429, 503):
        return False
    code = (parsed or {}).get("Error", {}).get("Code", "")
    return code in THROTTLING_CODES or code == "503"


class RateCap:
    """At most ``per_second`` requests a second from one run (a token bucket holding a tenth
    of a second's worth), shared by its threads."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.burst = max(1.0, per_second / 10)
        self.tokens = self.burst
        self.at = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this request may go."""
        while True:
            with self._lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                short = (1 - self.tokens) / self.per_second
            time.sleep(short)


_caps: dict[tuple[str, float], RateCap] = {}


def rate_cap(run: str, per_second: float | None) -> RateCap | None:
    """The cap shared by every task of run ``run`` in this process (None: no cap)."""
    if not per_second:
        return None
    with _paces_lock:
        return _caps.setdefault((run, per_second), RateCap(per_second))


class GlobalRate:
    """Slots of a Prefect global concurrency limit with slot decay, taken ``chunk`` at a time
    (one call to the Prefect server per chunk of requests, not per request)."""

    def __init__(self, name: str, chunk: int) -> None:
        self.name, self.chunk = name, max(1, chunk)
        self.left = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            if self.left == 0:
                from prefect.concurrency.sync import rate_limit

                rate_limit(self.name, occupy=self.chunk, strict=True)
                self.left = self.chunk
            self.left -= 1


def global_restore_rate(name: str = GLOBAL_RESTORE_LIMIT) -> GlobalRate | None:
    """The account's restore budget if the Prefect server has it (active, with slot decay):
    slots taken in chunks of a tenth of a second's decay. None when there is none."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as prefect:
            limit = prefect.read_global_concurrency_limit_by_name(name)
    except Exception:  # no such limit (ObjectNotFound) or no API to ask
        return None
    decay = float(getattr(limit, "slot_decay_per_second", 0) or 0)
    if not limit.active or decay <= 0:
        return None
    return GlobalRate(name, min(int(decay / 10), max(1, limit.limit // 4)))
