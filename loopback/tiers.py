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
- ``ListObjectsV2`` and ``ListObjectVersions`` with ``x-amz-optional-object-attributes:
  RestoreStatus`` get ``RestoreStatus`` for every object (version) a restore was requested for;
- a restore, GET or HEAD with ``versionId`` is about that version (moto restores the latest),
  one without about the current version; restores are kept per version, as S3 keeps them.
"""

from __future__ import annotations

import html
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

from loopback.request import (
    ACCOUNT,
    captured,
    error,
    read_body,
    respond,
    served,
    with_headers,
)
from loopback.restxml import local

ARCHIVE_ACCESS_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")


@dataclass
class _Restore:
    ready_at: float
    days: int | None


def _stored(bucket: str, key: str, version_id: str | None = None) -> Any:
    """moto's object (a version of it, or the current one), or None."""
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends

    try:
        return s3_backends[ACCOUNT]["aws"].get_object(bucket, key, version_id=version_id)
    except MissingBucket:
        return None


class ArchiveTiers:
    """Restore timing and archive-tier behaviour, keyed by (bucket, key) and then, for
    restores, by version id ("null" where the bucket was never versioned)."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {"Expedited": 0.0, "Standard": 0.0, "Bulk": 0.0}
        self.expedited_unavailable = False
        #: Every RestoreObject seen: (bucket, key, Days or None, Tier), in order.
        self.requests: list[tuple[str, str, int | None, str]] = []
        self._restores: dict[tuple[str, str], dict[str, _Restore]] = {}
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

    def _state(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> tuple[str | None, _Restore | None, bool]:
        """(archive tier, restore, in progress) of a version of a key (the current one when
        ``version_id`` is None), with finished Intelligent-Tiering restores applied."""
        with self._lock:
            versions = self._restores.get((bucket, key))
        if versions and version_id is None:
            current = _stored(bucket, key)
            version_id = current.version_id if current is not None else None
        with self._lock:
            restore = versions.get(version_id) if versions and version_id else None
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
        tier, restore, in_progress = self._state(
            request.bucket, request.key, request.param("versionId")
        )
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
        """A deleted bucket takes every restore and archive tier in it along; a delete in it
        takes those of the versions of ``key`` that are gone (a delete marker leaves the
        versions it hides, and their restores, in place, as on S3)."""
        if key is None:
            with self._lock:
                for state in (self._restores, self._archived):
                    for where in [where for where in state if where[0] == bucket]:
                        state.pop(where, None)
            return
        with self._lock:
            versions = list(self._restores.get((bucket, key), ()))
        gone = [v for v in versions if _stored(bucket, key, v) is None]
        current = _stored(bucket, key)
        with self._lock:
            kept = self._restores.get((bucket, key), {})
            for version_id in gone:
                kept.pop(version_id, None)
            if not kept:
                self._restores.pop((bucket, key), None)
            if current is None:
                self._archived.pop((bucket, key), None)

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
        """RestoreObject, answered here for every version (moto's restores the latest)."""
        days, tier = _parse_restore_request(read_body(environ))
        status, code, message = self.restore(
            request.bucket, request.key, days, tier, request.param("versionId")
        )
        line = f"{status} {HTTPStatus(status).phrase}"
        if code:
            return error(start_response, line, code, message)
        return respond(start_response, line)

    def _admit(
        self, bucket: str, key: str, days: int | None, tier: str, version_id: str
    ) -> tuple[tuple[int, str, str] | None, float, str | None]:
        """What S3 checks before any restore, for requests and Batch Operations tasks alike:
        (refusal as (HTTP status, code, message) or None, when it will be ready, the
        Intelligent-Tiering archive tier). An archive-tier restore is recorded here."""
        with self._lock:
            self.requests.append((bucket, key, days, tier))
        archive_tier, _, in_progress = self._state(bucket, key, version_id)
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
            self._record(bucket, key, version_id, _Restore(ready_at, None))
        return None, ready_at, archive_tier

    def _record(self, bucket: str, key: str, version_id: str, restore: _Restore) -> None:
        with self._lock:
            self._restores.setdefault((bucket, key), {})[version_id] = restore

    def restore(
        self, bucket: str, key: str, days: int | None, tier: str, version_id: str | None = None
    ) -> tuple[int, str, str]:
        """Restore a version of an object (the current one by default) in the store, for a
        RestoreObject request and for each task of a Batch Operations job alike:
        (HTTP status, error code or "", message)."""
        from moto.s3.models import ARCHIVE_STORAGE_CLASSES, s3_backends

        if not s3_backends[ACCOUNT]["aws"].buckets.get(bucket):
            return 404, "NoSuchBucket", "The specified bucket does not exist"
        stored = _stored(bucket, key, version_id)
        if stored is None:
            if version_id is not None:
                return 404, "NoSuchVersion", "The specified version does not exist."
            return 404, "NoSuchKey", "The specified key does not exist."
        version_id = stored.version_id
        refused, ready_at, archive_tier = self._admit(bucket, key, days, tier, version_id)
        if refused is not None:
            return refused
        if archive_tier:
            return 202, "", ""
        if stored.storage_class not in ARCHIVE_STORAGE_CLASSES:
            return (
                403,
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
            )
        if days is None:
            return 400, "InvalidArgument", "Days is required for this storage class"
        already = stored.expiry_date is not None
        stored.restore(days)
        if already:
            return 200, "", ""
        self._record(bucket, key, version_id, _Restore(ready_at, days))
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
            contents, element = match.group(0), match.group(1)
            raw = re.search(r"<Key>(.*?)</Key>", contents, re.S)
            if raw is None:
                return contents
            key = html.unescape(raw.group(1))
            key = unquote_plus(key) if url_encoded else key
            version = re.search(r"<VersionId>(.*?)</VersionId>", contents, re.S)
            version_id = html.unescape(version.group(1)) if version else None
            _, restore, in_progress = self._state(bucket, key, version_id)
            if restore is None:
                return contents
            status = f"<IsRestoreInProgress>{str(in_progress).lower()}</IsRestoreInProgress>"
            if not in_progress and restore.days is not None:
                expiry = datetime.fromtimestamp(restore.ready_at, UTC) + timedelta(
                    days=restore.days
                )
                status += f"<RestoreExpiryDate>{expiry:%Y-%m-%dT%H:%M:%S.000Z}</RestoreExpiryDate>"
            return contents.replace(
                f"</{element}>", f"<RestoreStatus>{status}</RestoreStatus></{element}>"
            )

        return re.sub(r"<(Contents|Version)>.*?</\1>", add, text, flags=re.S).encode()


def _parse_restore_request(body: bytes) -> tuple[int | None, str]:
    """(Days, Tier) of a RestoreRequest body; Tier defaults to Standard as in S3."""
    days, tier = None, "Standard"
    if not body:
        return days, tier
    for node in ET.fromstring(body).iter():
        name = local(node.tag)
        if name == "Days" and node.text:
            days = int(node.text)
        elif name == "Tier" and node.text:
            tier = node.text.strip()
    return days, tier
