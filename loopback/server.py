"""A real S3 endpoint on 127.0.0.1 (moto's server) that tests, the demo and benchmarks share.

:class:`LoopbackS3` runs moto's server in a thread of this process, behind a
small WSGI layer that can inject what real S3 does and moto doesn't: throttling
(503 SlowDown) at a rate, an error for matching requests, rewritten response
headers (say, a wrong ETag), connections cut after N bytes of a request or response
body, and archive tiers whose restores take time
(:mod:`loopback.tiers`). It also counts requests by operation, so a benchmark
can report requests per object. ``python -m loopback serve`` runs it in a
process of its own.

    with LoopbackS3() as s3:
        os.environ.update(s3.environ())   # boto3 and s3fs now talk to it
        s3.inject_error("GET", r"\\.tiff$", status=503, code="SlowDown", times=3)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random
from typing import Any
from urllib.parse import parse_qs, unquote

import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from loopback import instances, listing, tags
from loopback.batch import BatchJobs
from loopback.net import LOOPBACK_CREDENTIALS, free_port
from loopback.tiers import ArchiveTiers
from loopback.vault import VaultJobs


@dataclass
class Request:
    """What a rule sees of a request (path-style addressing, as botocore uses for an IP)."""

    method: str
    bucket: str
    key: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    service: str = "s3"

    @property
    def operation(self) -> str:
        """A rough operation name, for counting (Glacier's prefixed ``Glacier:``)."""
        q = self.query
        if self.service == "glacier":
            return "Glacier:" + _glacier_operation(self.method, self.key)
        if self.service == "s3control":
            return "S3Control:" + _control_operation(self.method, self.key)
        if self.method == "POST" and "restore" in q:
            return "RestoreObject"
        if self.method == "POST" and "delete" in q:
            return "DeleteObjects"
        if not self.key:
            return {"GET": "ListObjects", "HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(
                self.method, self.method + "Bucket"
            )
        if "uploadId" in q or "uploads" in q:
            return "Multipart" + self.method.title()
        return {
            "GET": "GetObject",
            "HEAD": "HeadObject",
            "PUT": "PutObject",
            "DELETE": "DeleteObject",
        }.get(self.method, self.method)


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


#: The first path segment of every S3 Control API request.
CONTROL_API = "v20180820"
#: The access key id in a SigV4 Authorization header, and the service it signed for.
_SIGNER = re.compile(r"Credential=([^/,\s]+)/")
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def _glacier_operation(method: str, path: str) -> str:
    """InitiateJob, DescribeJob, GetJobOutput, ListJobs, UploadArchive, DeleteArchive, ..."""
    parts = path.split("/")  # vaults/V/... after the account id
    tail = parts[2:] if len(parts) > 2 else []
    if tail[:1] == ["jobs"]:
        if len(tail) == 1:
            return "InitiateJob" if method == "POST" else "ListJobs"
        return "GetJobOutput" if tail[-1] == "output" else "DescribeJob"
    if tail[:1] == ["archives"]:
        return "UploadArchive" if method == "POST" else "DeleteArchive"
    return {"GET": "DescribeVault", "PUT": "CreateVault", "DELETE": "DeleteVault"}.get(
        method, method + "Vault"
    )


def _control_operation(method: str, path: str) -> str:
    """CreateJob, ListJobs, DescribeJob, UpdateJobStatus (Batch Operations)."""
    parts = path.split("/")
    if parts == ["jobs"]:
        return "CreateJob" if method == "POST" else "ListJobs"
    if parts[:1] == ["jobs"] and parts[-1] == "status":
        return "UpdateJobStatus"
    if parts[:1] == ["jobs"]:
        return "DescribeJob"
    return method + ":" + path


def _error_body(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>loopback</RequestId></Error>"
    ).encode()


class FaultInjector:
    """WSGI middleware in front of moto: counts requests, applies :class:`Rule`s."""

    def __init__(self, app: Any, seed: int = 7) -> None:
        self.app = app
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()
        #: Requests by the access key id that signed them (which credentials a run used).
        self.access_keys: Counter[str] = Counter()
        self.responders: list[Callable[[Request, Any, Callable], Iterable[bytes] | None]] = []
        self.tiers = ArchiveTiers()
        self.vaults = VaultJobs()
        self.batch = BatchJobs(self.tiers)
        self._lock = threading.Lock()
        self._random = Random(seed)

    def _request(self, environ: dict) -> Request:
        # PATH_INFO is already percent-decoded, as latin-1 text of the bytes: decode the raw
        # URI instead, so that UTF-8 keys and keys with '%' come out as S3 stores them
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            path = unquote(raw.split("?", 1)[0])
        else:
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        bucket, _, key = path.lstrip("/").partition("/")
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        scope = _SCOPE.search(headers.get("authorization", ""))
        service = scope.group(1) if scope else "s3"
        if bucket == CONTROL_API:
            service = "s3control"  # signed as "s3", but the control API's paths
        return Request(
            environ["REQUEST_METHOD"],
            bucket,
            key,
            parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            headers,
            service,
        )

    def _control(self, path: str, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Control calls for a server in another process (benchmarks):

        ``POST /_loopback/bulk-put?bucket=B&prefix=P&count=N&storage_class=C``,
        ``GET /_loopback/counts``, ``POST /_loopback/counts/reset``,
        ``POST /_loopback/durations?Standard=2&Bulk=5``,
        ``POST /_loopback/restore?bucket=B&prefix=P&count=N&start=0&step=2&ready_in=0``.
        """
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/_loopback/bulk-put":
            keys = (f"{query['prefix']}{i:07d}" for i in range(int(query["count"])))
            answer: Any = {
                "created": bulk_put(
                    query["bucket"], keys, storage_class=query.get("storage_class", "STANDARD")
                )
            }
        elif path == "/_loopback/restore":
            # restore every step-th bulk-put key from start, readable in ready_in seconds
            # (as an interrupted earlier run would have left them); not counted as requests
            step, start = int(query.get("step", 1)), int(query.get("start", 0))
            saved = dict(self.tiers.durations)
            self.tiers.durations["Standard"] = float(query.get("ready_in", 0))
            try:
                answers = Counter(
                    self.tiers.restore(query["bucket"], f"{query['prefix']}{i:07d}", 7, "Standard")[
                        0
                    ]
                    for i in range(start, int(query["count"]), step)
                )
            finally:
                self.tiers.durations = saved
            answer = {str(k): v for k, v in answers.items()}
        elif path == "/_loopback/counts":
            with self._lock:
                answer = dict(self.counts)
        elif path == "/_loopback/counts/reset":
            with self._lock:
                self.counts.clear()
            answer = {}
        elif path == "/_loopback/durations":
            self.tiers.durations.update({k: float(v) for k, v in query.items()})
            answer = dict(self.tiers.durations)
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown control call"]
        body = json.dumps(answer).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _pick(self, request: Request) -> Rule | None:
        with self._lock:
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

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            listing.invalidate()  # a reset forgets every bucket
            return self.app(environ, start_response)
        if path.startswith("/_loopback/"):
            return self._control(path, environ, start_response)
        request = self._request(environ)
        if request.method not in ("GET", "HEAD"):
            listing.invalidate()  # a write may add or remove keys
        signer = _SIGNER.search(environ.get("HTTP_AUTHORIZATION", ""))
        with self._lock:
            self.counts[request.operation] += 1
            self.access_keys[signer.group(1) if signer else "(unsigned)"] += 1
        for responder in list(self.responders):
            answer = responder(request, environ, start_response)
            if answer is not None:
                return answer
        rule = self._pick(request)
        if rule is None:
            return self.serve(request, environ, start_response)
        if rule.cut_after is not None:
            return self._cut(rule, request, environ, start_response)
        if rule.status:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                environ["wsgi.input"].read(length)
            body = b"" if request.method == "HEAD" else _error_body(rule.code, rule.message)
            start_response(
                f"{rule.status} {rule.code}",
                [
                    ("Content-Type", "application/xml"),
                    ("Content-Length", str(len(body))),
                    ("x-amz-request-id", "loopback"),
                ],
            )
            return [body]

        def rewrite(status: str, headers: list, exc_info: Any = None) -> Any:
            names = {k.lower() for k in rule.headers}
            kept = [(k, v) for k, v in headers if k.lower() not in names]
            return start_response(status, kept + list(rule.headers.items()), exc_info)

        return self.app(environ, rewrite)

    def _cut(
        self, rule: Rule, request: Request, environ: dict, start_response: Callable
    ) -> Iterable[bytes]:
        """Serve ``rule``'s request until its byte budget is spent, then drop the connection."""
        assert rule.cut_after is not None
        if rule.cut == "request":
            environ["wsgi.input"].read(min(rule.cut_after, int(environ.get("CONTENT_LENGTH") or 0)))
            _drop(environ)
        return _truncated(self.serve(request, environ, start_response), rule.cut_after, environ)

    def serve(self, request: Request, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Answer ``request`` as the endpoint does without faults (vaults, Batch Operations,
        tags and archive tiers in front of moto)."""
        if request.service == "glacier":
            answer = self.vaults.handle(environ, start_response, self.app)
        elif request.service == "s3control" and request.key.startswith("jobs"):
            answer = self.batch.handle(environ, start_response, self.app)
        else:
            answer = tags.handle(request, environ, start_response) or self.tiers.handle(
                request, environ, start_response, self.app
            )
        return self.app(environ, start_response) if answer is None else answer


def _drop(environ: dict) -> None:
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
            _drop(environ)
        budget -= len(chunk)
        yield chunk


class LoopbackS3:
    """moto's S3 server on 127.0.0.1 with fault injection; start/stop or use as a context."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.injector: FaultInjector | None = None
        self._server = _Server(self, port=self.port)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackS3:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> LoopbackS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """Environment variables that point boto3 and s3fs at this endpoint."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **LOOPBACK_CREDENTIALS}

    def reset(self) -> None:
        """Forget every bucket and object, every injected fault and archive-tier state."""
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        instances.install()
        self.clear_faults()
        self.tiers.reset()
        self.vaults.reset()
        self.batch.reset()

    def bulk_put(
        self, bucket: str, keys: Iterable[str], body: bytes = b"x", storage_class: str = "STANDARD"
    ) -> int:
        """Create many objects at once, straight in the server's store (fast seeding of
        tens of thousands of keys; the server runs in this process)."""
        return bulk_put(bucket, keys, body, storage_class)

    @property
    def tiers(self) -> ArchiveTiers:
        """Restore durations per tier, Intelligent-Tiering archive tiers, Expedited capacity."""
        assert self.injector is not None
        return self.injector.tiers

    @property
    def batch(self) -> BatchJobs:
        """S3 Batch Operations restore jobs: task failures, failed jobs, task speed."""
        assert self.injector is not None
        return self.injector.batch

    @property
    def vaults(self) -> VaultJobs:
        """Glacier vault jobs: durations per tier, output window, capacity errors, corruption."""
        assert self.injector is not None
        return self.injector.vaults

    # faults
    def clear_faults(self) -> None:
        assert self.injector is not None
        with self.injector._lock:
            self.injector.rules.clear()
            self.injector.responders.clear()
            self.injector.counts.clear()
            self.injector.access_keys.clear()

    def add_rule(self, rule: Rule) -> Rule:
        assert self.injector is not None
        with self.injector._lock:
            self.injector.rules.append(rule)
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
        assert self.injector is not None
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

        with self.injector._lock:
            self.injector.responders.append(responder)

    @property
    def request_counts(self) -> dict[str, int]:
        assert self.injector is not None
        with self.injector._lock:
            return dict(self.injector.counts)

    @property
    def access_keys(self) -> dict[str, int]:
        """Requests by the access key id that signed them, since the faults were cleared."""
        assert self.injector is not None
        with self.injector._lock:
            return dict(self.injector.access_keys)


class _Server(ThreadedMotoServer):
    """moto's threaded server with the fault injector in front of its WSGI app."""

    def __init__(self, owner: LoopbackS3, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self._owner = owner

    def _server_entry(self) -> None:
        listing.install()
        instances.install()
        injector = FaultInjector(DomainDispatcherApplication(create_backend_app))
        self._owner.injector = injector
        self._server = make_server(
            self._ip_address, self._port, injector, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def bulk_put(
    bucket: str, keys: Iterable[str], body: bytes = b"x", storage_class: str = "STANDARD"
) -> int:
    """Create objects directly in this process's moto store (no HTTP round trips)."""
    from moto.s3.models import s3_backends

    from loopback import listing

    listing.invalidate()
    backend = s3_backends["123456789012"]["aws"]
    n = 0
    for key in keys:
        backend.put_object(bucket, key, body, storage=storage_class, disable_notification=True)
        n += 1
    listing.invalidate()
    return n
