"""Faults the loopback endpoint injects on purpose: errors at a rate, rewritten headers,
connections cut after N bytes, and actions run when a request arrives (for races).

:class:`Faults` holds the rules and applies them to a request; :class:`FaultControls` is the
part of :class:`loopback.server.LoopbackS3` that tests call to add them.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random
from typing import Any

from loopback.request import Request, error


@dataclass
class Rule:
    """Match requests; answer with an error, or rewrite the response headers."""

    match: Callable[[Request], bool]
    status: int = 0
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    #: Drop the connection after this many bytes of the body ("request" or "response").
    cut_after: int | None = None
    cut: str = "response"
    times: int | None = None  # None: every match
    rate: float = 1.0  # share of matches it applies to
    hits: int = 0


Responder = Callable[[Request, Any, Callable], Iterable[bytes] | None]


class Faults:
    """The rules and responders in force, and how a matching request is answered."""

    def __init__(self, seed: int = 7) -> None:
        self.rules: list[Rule] = []
        self.responders: list[Responder] = []
        self.lock = threading.Lock()
        self._random = Random(seed)

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.responders.clear()

    def pick(self, request: Request) -> Rule | None:
        """The first rule that applies to ``request`` (counted as a hit), or None."""
        with self.lock:
            for rule in self.rules:
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if not rule.match(request):
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                rule.hits += 1
                return rule
        return None

    def apply(
        self,
        rule: Rule,
        request: Request,
        environ: dict,
        start_response: Callable,
        serve: Callable[[dict, Callable], Iterable[bytes]],
    ) -> Iterable[bytes]:
        """Answer ``request`` as ``rule`` says; ``serve`` answers it without faults."""
        if rule.cut_after is not None:
            if rule.cut == "request":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                environ["wsgi.input"].read(min(rule.cut_after, length))
                drop(environ)
            return _truncated(serve(environ, start_response), rule.cut_after, environ)
        if rule.status:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                environ["wsgi.input"].read(length)
            return error(
                start_response,
                f"{rule.status} {rule.code}",
                rule.code,
                rule.message,
                head=request.method == "HEAD",
            )

        def rewrite(status: str, headers: list, exc_info: Any = None) -> Any:
            names = {k.lower() for k in rule.headers}
            kept = [(k, v) for k, v in headers if k.lower() not in names]
            return start_response(status, kept + list(rule.headers.items()), exc_info)

        return serve(environ, rewrite)


def drop(environ: dict) -> None:
    """Close the client's connection at once, as a network cut would (no response)."""
    with contextlib.suppress(OSError):
        environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):  # what was buffered, so it isn't read as a request
        environ["wsgi.input"].read()
    raise ConnectionResetError("loopback: connection cut")


def _truncated(body: Iterable[bytes], budget: int, environ: dict) -> Iterable[bytes]:
    """``body`` up to ``budget`` bytes, then a dropped connection (the headers promised more)."""
    for chunk in body:
        if len(chunk) >= budget:
            if budget:
                yield chunk[:budget]
            drop(environ)
        budget -= len(chunk)
        yield chunk


class FaultControls:
    """What tests call on the endpoint to inject faults (mixed into ``LoopbackS3``)."""

    @property
    def faults(self) -> Faults:
        raise NotImplementedError

    def add_rule(self, rule: Rule) -> Rule:
        with self.faults.lock:
            self.faults.rules.append(rule)
        return rule

    def inject_error(
        self,
        method: str | None = None,
        key_pattern: str = "",
        *,
        status: int = 503,
        code: str = "SlowDown",
        message: str = "Please reduce your request rate.",
        times: int | None = None,
        rate: float = 1.0,
        operation: str | None = None,
    ) -> Rule:
        """Answer matching requests with an S3 error (default: throttling)."""
        pattern = re.compile(key_pattern)
        return self.add_rule(
            Rule(
                match=lambda r: (
                    (method is None or r.method == method)
                    and (operation is None or r.operation == operation)
                    and bool(pattern.search(r.key))
                ),
                status=status,
                code=code,
                message=message,
                times=times,
                rate=rate,
            )
        )

    def throttle(self, rate: float, operation: str | None = None) -> Rule:
        """Answer a share of requests (``rate``, 0-1) with 503 SlowDown."""
        return self.inject_error(operation=operation, rate=rate)

    def cut_connections(
        self,
        operation: str,
        after_bytes: int,
        *,
        direction: str = "response",
        rate: float = 1.0,
        times: int | None = None,
        key_pattern: str = "",
    ) -> Rule:
        """Drop the connection after ``after_bytes`` of a matching request's or response's body.

        ``direction="response"``: the client got the headers and part of the body (a download
        cut half-way); ``"request"``: the server read part of an upload and hung up.
        """
        if direction not in ("request", "response"):
            raise ValueError(f"direction must be 'request' or 'response', not {direction!r}")
        pattern = re.compile(key_pattern)
        return self.add_rule(
            Rule(
                match=lambda r: r.operation == operation and bool(pattern.search(r.key)),
                cut_after=after_bytes,
                cut=direction,
                times=times,
                rate=rate,
            )
        )

    def override_header(
        self, method: str, key_pattern: str, header: str, value: str, times: int | None = None
    ) -> Rule:
        """Rewrite a response header of matching requests (say, report a wrong ETag)."""
        pattern = re.compile(key_pattern)
        return self.add_rule(
            Rule(
                match=lambda r: r.method == method and bool(pattern.search(r.key)),
                headers={header: value},
                times=times,
            )
        )

    def on_request(
        self, operation: str, key_pattern: str, action: Callable[[], Any], times: int = 1
    ) -> None:
        """Run ``action`` when a matching request arrives, before it is served (``times`` times).

        For races: change a source object while an archive is being built.
        """
        pattern = re.compile(key_pattern)
        left = [times]
        lock = threading.Lock()

        def responder(request: Request, environ: dict, start_response: Callable) -> None:
            if request.operation != operation or not pattern.search(request.key):
                return None
            with lock:
                if left[0] <= 0:
                    return None
                left[0] -= 1
            action()
            return None

        with self.faults.lock:
            self.faults.responders.append(responder)
