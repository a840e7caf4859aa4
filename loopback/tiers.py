"""Archive tiers for the loopback endpoint: restores that take time, Intelligent-Tiering archive
access tiers, Expedited capacity errors, and ``RestoreStatus`` in listings.

moto restores GLACIER and DEEP_ARCHIVE objects instantly, knows no
``x-amz-archive-status``, and ignores ``OptionalObjectAttributes``. This layer,
in front of moto, behaves as S3 does:

- a restore stays ``ongoing-request="true"`` for ``durations[tier]`` seconds; meanwhile
  GET answers ``InvalidObjectState`` and a second request ``RestoreAlreadyInProgress`` (409);
- an object marked with :meth:`ArchiveTiers.archive` (Intelligent-Tiering) reports
  ``x-amz-archive-status``, can't be read, refuses a restore with ``Days`` and takes one
  without; once restored it reads normally;
- ``expedited_unavailable`` makes Expedited requests fail with
  ``GlacierExpeditedRetrievalNotAvailable`` (503);
- ``ListObjectsV2`` with ``x-amz-optional-object-attributes: RestoreStatus`` gets
  ``RestoreStatus`` for every object a restore was requested for.
"""

from __future__ import annotations

import html
import io
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_plus

from loopback.request import captured, error, respond, served, with_headers

ARCHIVE_ACCESS_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")


@dataclass
class _Restore:
    ready_at: float
    days: int | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class ArchiveTiers:
    """Restore timing and archive-tier behaviour, keyed by (bucket, key)."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {"Expedited": 0.0, "Standard": 0.0, "Bulk": 0.0}
        self.expedited_unavailable = False
        #: Every RestoreObject seen: (bucket, key, Days or None, Tier), in order.
        self.requests: list[tuple[str, str, int | None, str]] = []
        self._restores: dict[tuple[str, str], _Restore] = {}
        self._archived: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.durations = {"Expedited": 0.0, "Standard": 0.0, "Bulk": 0.0}
            self.expedited_unavailable = False
            self.requests.clear()
            self._restores.clear()
            self._archived.clear()

    def archive(self, bucket: str, key: str, tier: str = "ARCHIVE_ACCESS") -> None:
        """Move an INTELLIGENT_TIERING object into an archive access tier."""
        if tier not in ARCHIVE_ACCESS_TIERS:
            raise ValueError(f"tier must be one of {ARCHIVE_ACCESS_TIERS}")
        with self._lock:
            self._archived[(bucket, key)] = tier

    def _state(self, bucket: str, key: str) -> tuple[str | None, _Restore | None, bool]:
        """(archive tier, restore, in progress) of a key, with finished IT restores applied."""
        with self._lock:
            restore = self._restores.get((bucket, key))
            in_progress = restore is not None and time.time() < restore.ready_at
            tier = self._archived.get((bucket, key))
            if tier and restore is not None and not in_progress:
                del self._archived[(bucket, key)]  # back in the frequent access tier
                tier = None
            return tier, restore, in_progress

    # -- the WSGI side -------------------------------------------------------------------

    def handle(
        self, request: Any, environ: dict, start_response: Callable, app: Callable
    ) -> Iterable[bytes] | None:
        """Answer or rewrite a request, or return None to let moto serve it as it is."""
        if request.operation == "RestoreObject":
            return self._restore(request, environ, start_response, app)
        if (
            request.operation == "ListObjects"
            and "restorestatus"
            in request.headers.get("x-amz-optional-object-attributes", "").lower()
        ):
            return self._list(request, environ, start_response, app)
        # DeleteBucket; not a subresource (?lifecycle, ...), which leaves the bucket in place
        if (
            request.method == "DELETE"
            and request.service == "s3"
            and not request.query
            and not request.key
        ):
            return self._delete_bucket(request, environ, start_response, app)
        copy_source = request.headers.get("x-amz-copy-source")
        if request.method == "PUT" and copy_source:
            return self._copy(copy_source, start_response)
        if request.operation not in {"GetObject", "HeadObject"}:
            return None
        tier, restore, in_progress = self._state(request.bucket, request.key)
        head = request.method == "HEAD"
        if request.operation == "GetObject" and (tier or in_progress):
            return error(
                start_response,
                "403 Forbidden",
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
            )
        if head and (tier or restore is not None):
            headers: dict[str, str] = {}
            if tier and not in_progress:
                headers["x-amz-archive-status"] = tier
            if in_progress:
                headers["x-amz-restore"] = 'ongoing-request="true"'
            elif restore is not None and restore.days is None:
                headers["x-amz-restore"] = 'ongoing-request="false"'
            return app(environ, with_headers(start_response, headers))
        return None

    def forget(self, bucket: str, key: str | None = None) -> None:
        """A deleted object, or bucket, takes its restore and archive tier with it."""
        with self._lock:
            for state in (self._restores, self._archived):
                gone = (
                    [(bucket, key)]
                    if key is not None
                    else [where for where in state if where[0] == bucket]
                )
                for where in gone:
                    state.pop(where, None)

    def _delete_bucket(
        self, request: Any, environ: dict, start_response: Callable, app: Callable
    ) -> Iterable[bytes]:
        answer, status = served(app, environ, start_response)
        if status.startswith("204"):
            self.forget(request.bucket)
        return answer

    def _copy(self, copy_source: str, start_response: Callable) -> Iterable[bytes] | None:
        """S3 refuses to copy from an archived object until its restore has completed."""
        from urllib.parse import unquote

        source = unquote(copy_source.split("?", 1)[0]).lstrip("/")
        bucket, _, key = source.partition("/")
        tier, _, in_progress = self._state(bucket, key)
        if tier or in_progress:
            return error(
                start_response,
                "403 Forbidden",
                "InvalidObjectState",
                "The source object of the COPY action is not in the active tier and is "
                "only stored in Amazon Glacier.",
            )
        return None

    def _restore(
        self, request: Any, environ: dict, start_response: Callable, app: Callable
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        days, tier = _parse_restore_request(body)
        refused, ready_at, archive_tier = self._admit(request.bucket, request.key, days, tier)
        if refused is not None:
            status, code, message = refused
            return error(start_response, f"{status} {HTTPStatus(status).phrase}", code, message)
        if archive_tier:
            return respond(start_response, "202 Accepted")
        answer, status = served(app, environ, start_response)
        if status.startswith("202") and days is not None:
            with self._lock:
                self._restores[(request.bucket, request.key)] = _Restore(ready_at, days)
        return answer

    def _admit(
        self, bucket: str, key: str, days: int | None, tier: str
    ) -> tuple[tuple[int, str, str] | None, float, str | None]:
        """What S3 checks before any restore, for requests and Batch Operations tasks alike:
        (refusal as (HTTP status, code, message) or None, when it will be ready, the
        Intelligent-Tiering archive tier). An archive-tier restore is recorded here."""
        with self._lock:
            self.requests.append((bucket, key, days, tier))
        archive_tier, _, in_progress = self._state(bucket, key)
        if tier == "Expedited" and self.expedited_unavailable:
            return (
                (
                    503,
                    "GlacierExpeditedRetrievalNotAvailable",
                    "Glacier expedited retrievals are currently not available, please try again "
                    "later",
                ),
                0.0,
                archive_tier,
            )
        if in_progress:
            refusal = (409, "RestoreAlreadyInProgress", "Object restore is already in progress")
            return refusal, 0.0, archive_tier
        ready_at = time.time() + self.durations.get(tier, 0.0)
        if archive_tier:
            if days is not None:
                refusal = (
                    400,
                    "InvalidArgument",
                    "Days is not allowed for INTELLIGENT_TIERING archive tiers",
                )
                return refusal, ready_at, archive_tier
            with self._lock:
                self._restores[(bucket, key)] = _Restore(ready_at, None)
        return None, ready_at, archive_tier

    def restore(self, bucket: str, key: str, days: int | None, tier: str) -> tuple[int, str, str]:
        """Restore an object straight in the store, as a RestoreObject request would (what a
        Batch Operations job does for each task): (HTTP status, error code, message)."""
        from moto.s3.exceptions import InvalidObjectState, MissingBucket, MissingKey
        from moto.s3.models import s3_backends

        refused, ready_at, archive_tier = self._admit(bucket, key, days, tier)
        if refused is not None:
            return refused
        if archive_tier:
            return 202, "", ""
        if days is None:
            return 400, "InvalidArgument", "Days is required for this storage class"
        backend = s3_backends["123456789012"]["aws"]
        try:
            already = backend.restore_object(bucket, key, str(days), None)
        except MissingKey:
            return 404, "NoSuchKey", "The specified key does not exist."
        except MissingBucket:
            return 404, "NoSuchBucket", "The specified bucket does not exist"
        except InvalidObjectState:
            return (
                403,
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
            )
        if already:
            return 200, "", ""
        with self._lock:
            self._restores[(bucket, key)] = _Restore(ready_at, days)
        return 202, "", ""

    def _list(
        self, request: Any, environ: dict, start_response: Callable, app: Callable
    ) -> Iterable[bytes]:
        status, headers, body = captured(app, environ)
        if status.startswith("200"):
            body = self._add_restore_status(request.bucket, body)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _add_restore_status(self, bucket: str, body: bytes) -> bytes:
        text = body.decode()
        url_encoded = "<EncodingType>url</EncodingType>" in text

        def add(match: re.Match) -> str:
            contents = match.group(0)
            raw = re.search(r"<Key>(.*?)</Key>", contents, re.S)
            if raw is None:
                return contents
            key = html.unescape(raw.group(1))
            key = unquote_plus(key) if url_encoded else key
            _, restore, in_progress = self._state(bucket, key)
            if restore is None:
                return contents
            status = f"<IsRestoreInProgress>{str(in_progress).lower()}</IsRestoreInProgress>"
            if not in_progress and restore.days is not None:
                expiry = datetime.fromtimestamp(restore.ready_at, UTC) + timedelta(
                    days=restore.days
                )
                status += f"<RestoreExpiryDate>{expiry:%Y-%m-%dT%H:%M:%S.000Z}</RestoreExpiryDate>"
            return contents.replace(
                "</Contents>", f"<RestoreStatus>{status}</RestoreStatus></Contents>"
            )

        return re.sub(r"<Contents>.*?</Contents>", add, text, flags=re.S).encode()


def _parse_restore_request(body: bytes) -> tuple[int | None, str]:
    """(Days, Tier) of a RestoreRequest body; Tier defaults to Standard as in S3."""
    days, tier = None, "Standard"
    if not body:
        return days, tier
    for node in ET.fromstring(body).iter():
        name = _local(node.tag)
        if name == "Days" and node.text:
            days = int(node.text)
        elif name == "Tier" and node.text:
            tier = node.text.strip()
    return days, tier
