"""A model of S3's speed for the loopback endpoint: per-request latency, per-connection
transfer rate and request ceilings, slowed down ``dilation`` times.

On S3, what a client controls is requests per object, requests in flight and what it does on
``503 SlowDown``; latency and the ceilings do the rest. The model makes the loopback answer
that way, with every time multiplied and every rate divided by the dilation D, so that the
model, not the endpoint's CPU, binds on a small machine. The requests in flight needed to
hold a ceiling (ceiling x latency, Little's law) are the same at any D: a client that holds
a ceiling at D = 10 holds it on S3. ``dilation=1`` is S3's figures as published.

The parameters and their sources are in :data:`PARAMETERS` (and ``docs/loopback.md``).

Above a ceiling the answer is ``503 SlowDown`` at once (no latency). Glacier vault and S3
Control requests get a small request's latency and no ceiling.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

#: The ceilings at D = 1, requests per second.
READS_PER_SECOND = 5500.0
WRITES_PER_SECOND = 3500.0
RESTORES_PER_SECOND = 1000.0
#: Seconds of a ceiling's rate a bucket may take at once.
BURST_SECONDS = 0.5
#: Bytes per second one connection moves each way, at D = 1.
CONNECTION_BYTES_PER_SECOND = 90e6

_GUIDE = "AWS, Best practices design patterns: optimizing Amazon S3 performance"
#: (parameter, value at D = 1, source): the model's one table.
PARAMETERS = (
    (
        "small request latency (HEAD, GET first byte, PUT, DELETE, copy, restore, tags)",
        "lognormal, median 20 ms, p99 150 ms, capped at 1 s",
        f"{_GUIDE}, timeouts and retries: small objects see 'roughly 100-200 milliseconds'; "
        "under 512 KB 'median latencies are often in the tens of milliseconds'",
    ),
    (
        "listing page latency (ListObjectsV2, ListObjectVersions)",
        "lognormal, median 60 ms, p99 300 ms, capped at 2 s",
        "no AWS figure; a page of 1,000 keys is assumed to take 3x a HEAD",
    ),
    (
        "transfer rate per connection, each way",
        "90 MB/s",
        f"{_GUIDE}, horizontal scaling: 'one concurrent request for each 85-90 MB/s'",
    ),
    (
        "GET/HEAD ceiling per bucket (listings included)",
        "5,500 requests/s",
        "S3 user guide, optimizing performance: 'at least 3,500 PUT/COPY/POST/DELETE or "
        "5,500 GET/HEAD requests per second per partitioned prefix'; a new bucket has one",
    ),
    ("PUT/COPY/POST/DELETE ceiling per bucket", "3,500 requests/s", "same"),
    (
        "RestoreObject ceiling per endpoint (one account)",
        "1,000 requests/s",
        "Glacier document history, 2022-11-15: 'up to 1,000 transactions per second per "
        "AWS account'",
    ),
    (
        "burst above a ceiling",
        "0.5 s of the ceiling's rate (at least 1 request)",
        "none published; S3 scales gradually and answers SlowDown meanwhile",
    ),
)


@dataclass(frozen=True)
class Latency:
    """A lognormal latency by its median and 99th percentile (seconds, at D = 1)."""

    median: float
    p99: float
    cap: float

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.median) / 2.3263  # z of the 99th percentile

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the distribution (seconds, at D = 1; below the cap)."""
        return min(self.cap, self.median * math.exp(NormalDist().inv_cdf(q) * self.sigma))

    def draw(self, rng: random.Random) -> float:
        return min(self.cap, self.median * math.exp(rng.gauss(0.0, self.sigma)))


SMALL = Latency(median=0.020, p99=0.150, cap=1.0)
LISTING = Latency(median=0.060, p99=0.300, cap=2.0)

_READS = {"GET", "HEAD"}
_LISTINGS = {"ListObjects"}


class TokenBucket:
    """``rate`` requests a second, ``burst`` at once; ``take`` says whether one may pass."""

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def kind(request: Any) -> str | None:
    """The ceiling a request counts against: "read", "write", "restore", or None."""
    if request.service != "s3" or not request.bucket:
        return None
    if request.operation == "RestoreObject":
        return "restore"
    if not request.key and request.method in ("PUT", "DELETE") and not request.query:
        return None  # creating or dropping a bucket
    return "read" if request.method in _READS else "write"


class S3Model:
    """Latency, transfer time and ceilings for every request, slowed ``dilation`` times."""

    def __init__(self, dilation: float = 10.0, seed: int = 11) -> None:
        if dilation <= 0:
            raise ValueError("dilation must be positive")
        self.dilation = dilation
        self.ceilings = {
            "read": READS_PER_SECOND / dilation,
            "write": WRITES_PER_SECOND / dilation,
            "restore": RESTORES_PER_SECOND / dilation,
        }
        self.connection_rate = CONNECTION_BYTES_PER_SECOND / dilation
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def describe(self) -> dict[str, Any]:
        """The model's parameters as in force (ceilings per second at this dilation)."""
        return {
            "dilation": self.dilation,
            "ceilings_per_second": dict(self.ceilings),
            "connection_bytes_per_second": self.connection_rate,
            "latency_seconds": {
                "small": {"median": SMALL.median * self.dilation, "p99": SMALL.p99 * self.dilation},
                "listing": {
                    "median": LISTING.median * self.dilation,
                    "p99": LISTING.p99 * self.dilation,
                },
            },
        }

    def admit(self, request: Any) -> bool:
        """Whether ``request`` is under its ceiling (False: answer 503 SlowDown)."""
        which = kind(request)
        if which is None:
            return True
        scope = "" if which == "restore" else request.bucket  # restores: per account
        with self._lock:
            bucket = self._buckets.get((which, scope))
            if bucket is None:
                rate = self.ceilings[which]
                bucket = TokenBucket(rate, max(1.0, rate * BURST_SECONDS))
                self._buckets[(which, scope)] = bucket
            return bucket.take()

    def latency(self, request: Any) -> float:
        """Seconds before the first byte of the answer, at this dilation."""
        shape = LISTING if request.operation in _LISTINGS else SMALL
        with self._lock:
            drawn = shape.draw(self._rng)
        return drawn * self.dilation

    def paced(
        self, request: Any, answer: Iterable[bytes], started: float, sent: int, received: int
    ) -> Iterator[bytes]:
        """``answer``, held back until the request's latency and the time its bodies take at
        one connection's rate have passed since ``started``."""
        due = started + self.latency(request) + (sent + received) / self.connection_rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield from answer
