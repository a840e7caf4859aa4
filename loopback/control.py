"""Control calls of the loopback endpoint, for a server in another process (benchmarks), and
seeding straight into moto's store.

``POST /_loopback/bulk-put?bucket=B&prefix=P&count=N&storage_class=C``,
``GET /_loopback/counts`` (one flat JSON object: requests received by operation, and the
throttled ones as ``SlowDown:<operation>``), ``POST /_loopback/counts/reset``,
``POST /_loopback/durations?Standard=2&Bulk=5``,
``POST /_loopback/restore?bucket=B&prefix=P&count=N&start=0&step=2&ready_in=0``,
``GET /_loopback/spans`` (``{operation: [first, last]}``: when the first and the last admitted
request of each operation arrived, epoch seconds, since the counts were reset; the same per
bucket as ``"<operation> <bucket>"``),
``GET /_loopback/actions`` (IAM actions the requests since the reset needed, loopback.iam),
``GET /_loopback/model`` (the speed model's parameters, or ``{}`` without one).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from loopback import listing
from loopback.request import backend

if TYPE_CHECKING:
    from loopback.server import FaultInjector


def handle(
    injector: FaultInjector, path: str, environ: dict, start_response: Callable
) -> Iterable[bytes]:
    """Answer one control call."""
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    answer: Any
    if path == "/_loopback/bulk-put":
        keys = (f"{query['prefix']}{i:07d}" for i in range(int(query["count"])))
        size = int(query.get("size", 0))
        answer = {
            "created": bulk_put(
                query["bucket"],
                keys,
                body=_image_slices(size) if size else b"x",
                storage_class=query.get("storage_class", "STANDARD"),
            )
        }
    elif path == "/_loopback/restore":
        answer = _restore(injector, query)
    elif path == "/_loopback/counts":
        answer = injector.counted()
    elif path == "/_loopback/actions":
        answer = injector.needed_actions()
    elif path == "/_loopback/spans":
        answer = injector.spans()
    elif path == "/_loopback/counts/reset":
        injector.reset_counts()
        answer = {}
    elif path == "/_loopback/durations":
        injector.tiers.durations.update({k: float(v) for k, v in query.items()})
        answer = dict(injector.tiers.durations)
    elif path == "/_loopback/model":
        answer = injector.model.describe() if injector.model else {}
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"unknown control call"]
    body = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _restore(injector: FaultInjector, query: dict[str, str]) -> dict[str, int]:
    """Restore every step-th bulk-put key from start, readable in ready_in seconds (as an
    interrupted earlier run would have left them); not counted as requests."""
    step, start = int(query.get("step", 1)), int(query.get("start", 0))
    tiers = injector.tiers
    saved = dict(tiers.durations)
    tiers.durations["Standard"] = float(query.get("ready_in", 0))
    try:
        answers = Counter(
            tiers.restore(query["bucket"], f"{query['prefix']}{i:07d}", 7, "Standard")[0]
            for i in range(start, int(query["count"]), step)
        )
    finally:
        tiers.durations = saved
    return {str(k): v for k, v in answers.items()}


def bulk_put(
    bucket: str,
    keys: Iterable[str],
    body: bytes | Callable[[int], bytes] = b"x",
    storage_class: str = "STANDARD",
) -> int:
    """Create objects directly in this process's moto store (no HTTP round trips); ``body``
    is every object's, or gives the n-th object's."""
    store = backend()
    n = 0
    with listing.writing():
        for key in keys:
            data = body(n) if callable(body) else body
            store.put_object(bucket, key, data, storage=storage_class, disable_notification=True)
            n += 1
    return n


def _image_slices(size: int) -> Callable[[int], bytes]:
    """Bodies of ``size`` bytes cut from the seeder's synthetic microscope frames, a different
    slice each, so they compress as a plate's images do (not as copies of one body)."""
    from loopback.seed import _body

    return lambda n: _body("image", size, n)
