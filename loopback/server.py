"""A real S3 endpoint on 127.0.0.1 (moto's server) that tests, the demo and benchmarks share.

:class:`LoopbackS3` runs moto's server in a thread of this process, behind a small WSGI
layer (:class:`FaultInjector`) that routes every request through, in order:

1. control calls (:mod:`loopback.control`) and request counting;
2. the speed model, when one is on (:mod:`loopback.model`: S3's latency and request
   ceilings, ``503 SlowDown`` above a ceiling);
3. injected faults (:mod:`loopback.faults`);
4. what S3 does and moto doesn't: checksums, encryption ETags, conditional and versioned
   deletes, Object Lock (:mod:`loopback.strict`), tags (:mod:`loopback.tags`), archive tiers
   and restores (:mod:`loopback.tiers`), Glacier vault jobs (:mod:`loopback.vault`) and
   Batch Operations (:mod:`loopback.batch`);
5. moto itself.

``python -m loopback serve`` runs it in a process of its own.

    with LoopbackS3() as s3:
        os.environ.update(s3.environ())   # boto3 and s3fs now talk to it
        s3.inject_error("GET", r"\\.tiff$", status=503, code="SlowDown", times=3)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from loopback import control, iam, instances, listing, strict, tags
from loopback.batch import BatchJobs
from loopback.faults import FaultControls, Faults, Rule
from loopback.model import S3Model
from loopback.net import LOOPBACK_CREDENTIALS, free_port
from loopback.request import SIGNER, Request, error, parse
from loopback.tiers import ArchiveTiers
from loopback.vault import VaultJobs

__all__ = ["FaultInjector", "LoopbackS3", "Request", "Rule", "bulk_put"]

bulk_put = control.bulk_put


class FaultInjector:
    """WSGI middleware in front of moto: counts requests, applies the speed model and faults,
    and answers as S3 does where moto doesn't."""

    def __init__(self, app: Any, model: S3Model | None = None, seed: int = 7) -> None:
        self.app = app
        self.model = model
        self.faults = Faults(seed)
        self.counts: Counter[str] = Counter()
        #: IAM actions the requests received needed (loopback.iam).
        self.actions: Counter[str] = Counter()
        #: When the first and the last admitted request of each operation arrived (epoch s).
        self.windows: dict[str, list[float]] = {}
        #: Requests by the access key id that signed them (which credentials a run used).
        self.access_keys: Counter[str] = Counter()
        self.tiers = ArchiveTiers()
        self.vaults = VaultJobs()
        self.batch = BatchJobs(self.tiers)
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[Rule]:
        return self.faults.rules

    @property
    def responders(self) -> list:
        return self.faults.responders

    def counted(self) -> dict[str, int]:
        """Requests received by operation, and throttled answers as ``SlowDown:<operation>``."""
        with self._lock:
            return dict(self.counts)

    def needed_actions(self) -> dict[str, int]:
        """IAM actions the requests since the last reset needed, with how many requests."""
        with self._lock:
            return dict(self.actions)

    def spans(self) -> dict[str, list[float]]:
        """``[first, last]`` arrival of admitted requests by operation, and by operation and
        bucket (``"RestoreObject my-bucket"``), since the last reset."""
        with self._lock:
            return {k: list(v) for k, v in self.windows.items()}

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.windows.clear()
            self.actions.clear()
            self.access_keys.clear()

    def _count(self, name: str, signer: str | None = None, actions: Iterable[str] = ()) -> None:
        with self._lock:
            self.counts[name] += 1
            if signer is not None:
                self.access_keys[signer] += 1
            self.actions.update(actions)

    def _admitted(self, operation: str, bucket: str | None) -> None:
        now = time.time()
        with self._lock:
            for name in (operation, f"{operation} {bucket}") if bucket else (operation,):
                span = self.windows.setdefault(name, [now, now])
                span[1] = now

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            with listing.writing():  # a reset forgets every bucket
                return list(self.app(environ, start_response))
        if path.startswith("/_loopback/"):
            return control.handle(self, path, environ, start_response)
        started = time.monotonic()
        request = parse(environ)
        signer = SIGNER.search(environ.get("HTTP_AUTHORIZATION", ""))
        self._count(
            request.operation,
            signer.group(1) if signer else "(unsigned)",
            iam.needed(request, environ),
        )
        if self.model is not None and not self.model.admit(request):
            self._count(f"SlowDown:{request.operation}")
            return _slow_down(request, environ, start_response)
        self._admitted(request.operation, request.bucket)
        sizes = [int(environ.get("CONTENT_LENGTH") or 0), 0]
        if self.model is not None:
            start_response = _measured(start_response, sizes)
        with listing.writing(request.bucket) if _changes_keys(request) else _nothing():
            answer = self._answer(request, environ, start_response)
        if self.model is None:
            return answer
        received = 0 if request.method == "HEAD" else sizes[1]  # a HEAD's length is not sent
        return self.model.paced(request, answer, started, sizes[0], received)

    def _answer(self, request: Request, environ: dict, start_response: Callable) -> list[bytes]:
        for responder in list(self.faults.responders):
            answer = responder(request, environ, start_response)
            if answer is not None:
                return answer
        rule = self.faults.pick(request)
        if rule is None:
            return self.serve(request, environ, start_response)
        if rule.code == "SlowDown":
            self._count(f"SlowDown:{request.operation}")
        return rule_answer(self, rule, request, environ, start_response)

    def serve(self, request: Request, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Answer ``request`` as the endpoint does without faults (vaults, Batch Operations,
        S3's semantics, tags and archive tiers in front of moto)."""
        if request.service == "glacier":
            answer = self.vaults.handle(environ, start_response, self.app)
        elif request.service == "s3control" and request.key.startswith("jobs"):
            answer = self.batch.handle(environ, start_response, self.app)
        else:
            # in turn, until one answers (an empty answer, such as a 204's, is an answer)
            layers: tuple[Callable[[], Iterable[bytes] | None], ...] = (
                lambda: strict.handle(request, environ, start_response, self.app, self.tiers),
                lambda: tags.handle(request, environ, start_response),
                lambda: self.tiers.handle(request, environ, start_response, self.app),
                lambda: strict.read(request, environ, start_response, self.app),
            )
            answer = None
            for layer in layers:
                answer = layer()
                if answer is not None:
                    break
        return self.app(environ, start_response) if answer is None else answer


def rule_answer(
    injector: FaultInjector,
    rule: Rule,
    request: Request,
    environ: dict,
    start_response: Callable,
) -> Iterable[bytes]:
    """``request`` answered as ``rule`` says."""
    return injector.faults.apply(
        rule, request, environ, start_response, lambda e, s: injector.serve(request, e, s)
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _changes_keys(request: Request) -> bool:
    """Whether serving ``request`` may add or remove keys (or buckets): the listings it
    must not be cached across."""
    if request.service != "s3" or request.method in ("GET", "HEAD"):
        return False
    if request.method == "POST":
        return "uploadId" in request.query or "delete" in request.query
    return True


def _measured(start_response: Callable, sizes: list[int]) -> Callable:
    """A ``start_response`` that notes the answer's Content-Length in ``sizes[1]``."""

    def record(status: str, headers: list, exc_info: Any = None) -> Any:
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                sizes[1] = int(value)
        return start_response(status, headers, exc_info)

    return record


def _slow_down(request: Request, environ: dict, start_response: Callable) -> list[bytes]:
    """S3's answer above a request ceiling, at once."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    return error(
        start_response,
        "503 Slow Down",
        "SlowDown",
        "Please reduce your request rate.",
        head=request.method == "HEAD",
    )


class LoopbackS3(FaultControls):
    """moto's S3 server on 127.0.0.1 with S3's semantics, fault injection and, with
    ``model="s3"``, S3's latency and request ceilings slowed ``dilation`` times.

    Start/stop it, or use it as a context manager.
    """

    def __init__(self, port: int = 0, model: str | None = None, dilation: float = 10.0) -> None:
        if model not in (None, "s3"):
            raise ValueError(f"model must be None or 's3', not {model!r}")
        self.port = port or free_port()
        self.model = S3Model(dilation) if model == "s3" else None
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
    def faults(self) -> Faults:
        assert self.injector is not None
        return self.injector.faults

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

    def clear_faults(self) -> None:
        """Forget injected faults, and the request counts."""
        assert self.injector is not None
        self.injector.faults.clear()
        self.injector.reset_counts()

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests received by operation (``SlowDown:<operation>``: answered 503 SlowDown)."""
        assert self.injector is not None
        return self.injector.counted()

    @property
    def request_spans(self) -> dict[str, list[float]]:
        """``[first, last]`` arrival (epoch s) of admitted requests by operation."""
        assert self.injector is not None
        return self.injector.spans()

    @property
    def actions(self) -> dict[str, int]:
        """IAM actions the requests since the last reset needed, with how many requests."""
        assert self.injector is not None
        return self.injector.needed_actions()

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
        strict.install()
        injector = FaultInjector(
            DomainDispatcherApplication(create_backend_app), model=self._owner.model
        )
        self._owner.injector = injector
        self._server = make_server(
            self._ip_address, self._port, injector, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()
