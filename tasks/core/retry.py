"""The retry policy: which layer retries what, and how often at most.

Three layers, each for its own kind of failure, so they never stack blindly:

1. **botocore** retries every single call (throttling, 5xx, dropped connections before a
   response) in its standard mode, :data:`CALL_ATTEMPTS` attempts in all.
2. :func:`retry_stream` retries what botocore can't see: a body cut off half-way while it
   is being read, :data:`STREAM_ATTEMPTS` reads in all. It never retries an error answer.
3. **Prefect** retries a whole task :data:`TASK_RETRIES` times, only for transient failures
   that outlived the layers below (:func:`retry_if_transient`).

Worst case against an endpoint that fails every request: one call in a task is sent
``(TASK_RETRIES + 1) * CALL_ATTEMPTS`` = 15 times before the task fails; a streamed read
whose bodies are always cut, ``(TASK_RETRIES + 1) * STREAM_ATTEMPTS`` = 9 GETs.
Restore requests go through a client without botocore retries, so that each answer is
classified by coldflow (Expedited falls back at once): :data:`RESTORE_ATTEMPTS` tries
each, and their tasks are not retried (per-key failures land in the ledger).
docs/decisions.md keeps the reasoning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from urllib3.exceptions import ProtocolError

from tasks.core.errors import TransientError, error_code, http_status

R = TypeVar("R")

#: Attempts botocore makes for one call (standard retry mode).
CALL_ATTEMPTS = 5
#: Reads of one streamed body when the connection drops half-way.
STREAM_ATTEMPTS = 3
#: Prefect retries of a task that failed for a transient reason.
TASK_RETRIES = 2
#: Tries of one restore request (its client makes each request once).
RESTORE_ATTEMPTS = 10
#: Seconds before a task's first retry (doubles after); $COLDFLOW_RETRY_BASE_SECONDS.
RETRY_BASE_SECONDS = float(os.environ.get("COLDFLOW_RETRY_BASE_SECONDS", "5"))

#: Error codes that mean "too many requests": the pace (tasks.core.pace) slows down on them.
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
#: Error codes worth trying again: throttling, timeouts, server-side failures.
TRANSIENT_ERROR_CODES = THROTTLING_CODES | frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "BandwidthLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)
#: Answers that look transient (503) but mean "not now for this request": nobody spins on
#: them, the caller decides (Expedited falls back to Standard).
NOT_RETRIED_CODES = frozenset(
    {"GlacierExpeditedRetrievalNotAvailable", "InsufficientCapacityException"}
)

_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)
#: A body cut off while it was read.
_STREAM_ERRORS = (IncompleteReadError, ResponseStreamingError, ProtocolError, ConnectionError)


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass if tried again: throttling, 5xx, dropped connections."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in NOT_RETRIED_CODES:
            return False
        return code in TRANSIENT_ERROR_CODES or http_status(exc) >= 500
    return isinstance(exc, _CONNECTION_ERRORS + _STREAM_ERRORS)


def is_stream_error(exc: BaseException) -> bool:
    """True for a body that broke off while being read (botocore's retries don't cover it)."""
    return isinstance(exc, _STREAM_ERRORS)


def retry_call(
    fn: Callable[[], R],
    should_retry: Callable[[BaseException], bool],
    attempts: int,
    first_delay: float = 0.5,
    max_delay: float = 8.0,
) -> R:
    """Call ``fn``, trying again with exponential backoff while ``should_retry(error)`` holds."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not should_retry(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


def retry_stream(fn: Callable[[], R]) -> R:
    """Run a read of a whole body again when the connection drops half-way (layer 2)."""
    return retry_call(fn, is_stream_error, attempts=STREAM_ATTEMPTS, first_delay=0.2)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a task only when it failed for a transient reason."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


#: Tasks pass scratch paths and small records; nothing is cached or persisted.
PLAIN: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
#: Layer 3: whole-task retries, only for throttling, 5xx and dropped connections.
TRANSIENT: dict[str, Any] = {
    "retries": TASK_RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_BASE_SECONDS),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
