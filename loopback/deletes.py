"""Deletes and Object Lock on the loopback endpoint, as S3 does them where moto doesn't.

- **Conditional deletes**: ``If-Match`` on DeleteObject and the per-object ``ETag`` in
  DeleteObjects are evaluated against the current version ("Conditional delete evaluations
  only apply to the current version of the object", S3 user guide, conditional deletes):
  ``412 PreconditionFailed`` (per key in DeleteObjects, the call itself 200) and the object
  stays; ``404 NoSuchKey`` when there is no current version. moto ignores the per-object ETag.
- **Versioned buckets**: a delete without ``VersionId`` adds a delete marker, for a key that
  does not exist too (moto makes none); on a bucket whose versioning is Suspended it replaces
  the ``null`` version with a ``null`` marker and keeps every other version (moto drops them
  all). A delete with ``VersionId`` is permanent.
- **Object Lock**: deleting a version under retention or legal hold is ``AccessDenied`` (per
  key in DeleteObjects); ``GetObjectRetention`` and ``GetObjectLegalHold`` answer (moto serves
  the body); a COMPLIANCE retention can't be shortened or weakened, nor a GOVERNANCE one
  without ``x-amz-bypass-governance-retention`` (403).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from loopback.request import Request, backend, error, read_body, respond

_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@dataclass
class Outcome:
    """What deleting one key (or version) did: an error code, or what was removed."""

    key: str
    version_id: str | None = None
    code: str = ""
    message: str = ""
    status: int = 204
    marker_version: str | None = None  # a delete marker was made (or removed) with this id


class _Missing:
    """What a delete marker for a key that never existed points at."""

    def __init__(self, name: str) -> None:
        self.name = name


def _current(bucket: Any, key: str) -> Any:
    versions = bucket.keys.getlist(key, [])
    return versions[-1] if versions else None


def delete_one(
    bucket_name: str,
    key: str,
    version_id: str | None = None,
    if_match: str | None = None,
    bypass: bool = False,
) -> Outcome:
    """Delete ``key`` (or its ``version_id``) as S3 would."""
    from moto.s3.exceptions import AccessDeniedByLock
    from moto.s3.models import FakeDeleteMarker, FakeKey

    store = backend()
    bucket = store.get_bucket(bucket_name)
    if if_match:
        current = _current(bucket, key)
        if not isinstance(current, FakeKey) or isinstance(current, FakeDeleteMarker):
            return Outcome(key, version_id, "NoSuchKey", "The specified key does not exist.", 404)
        if if_match.strip() != "*" and if_match.replace('"', "") != current.etag.strip('"'):
            return Outcome(
                key,
                version_id,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                412,
            )
    status = bucket.versioning_status
    if version_id is None and status in ("Enabled", "Suspended"):
        return _add_marker(bucket, key, status == "Suspended")
    if version_id is not None:
        removed = next(
            (v for v in bucket.keys.getlist(key, []) if str(v.version_id) == str(version_id)),
            None,
        )
        try:
            store.delete_object(bucket_name, key, version_id=version_id, bypass=bypass)
        except AccessDeniedByLock:
            return Outcome(key, version_id, "AccessDenied", "Access Denied", 403)
        marker = removed.version_id if isinstance(removed, FakeDeleteMarker) else None
        return Outcome(key, version_id, marker_version=marker)
    store.delete_object(bucket_name, key)
    return Outcome(key)


def _add_marker(bucket: Any, key: str, suspended: bool) -> Outcome:
    from moto.s3.models import FakeDeleteMarker

    versions = bucket.keys.getlist(key, [])
    marker = FakeDeleteMarker(key=versions[-1] if versions else _Missing(key))
    if suspended:  # the null version gives way to a null marker; the others stay
        marker._version_id = "null"
        versions = [v for v in versions if str(v.version_id) != "null"]
    bucket.keys.setlist(key, [*versions, marker])
    return Outcome(key, marker_version=marker.version_id)


def handle(
    request: Request, environ: dict, start_response: Callable, forget: Callable[[str, str], None]
) -> Iterable[bytes] | None:
    """DeleteObject, DeleteObjects and the Object Lock calls; None for anything else.
    ``forget(bucket, key)`` is told of every key a delete touched."""
    query, method = request.query, request.method
    if not _bucket_exists(request.bucket):
        return None
    if method == "POST" and "delete" in query and not request.key:
        return _delete_many(request, environ, start_response, forget)
    if not request.key:
        return None
    if method == "DELETE" and not ({"uploadId", "tagging"} & query.keys()):
        outcome = delete_one(
            request.bucket,
            request.key,
            request.param("versionId"),
            request.headers.get("if-match"),
            _bypass(request),
        )
        if outcome.code:
            return error(
                start_response, f"{outcome.status} {outcome.code}", outcome.code, outcome.message
            )
        forget(request.bucket, request.key)
        headers = []
        if outcome.marker_version:
            headers = [("x-amz-delete-marker", "true")]
            headers.append(("x-amz-version-id", outcome.version_id or outcome.marker_version))
        elif outcome.version_id:
            headers = [("x-amz-version-id", outcome.version_id)]
        start_response("204 No Content", headers)
        return [b""]
    if "retention" in query or "legal-hold" in query:
        return _lock_call(request, environ, start_response)
    return None


def _bucket_exists(name: str) -> bool:
    try:
        backend().get_bucket(name)
    except Exception:
        return False
    return True


def _bypass(request: Request) -> bool:
    return request.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"


def _delete_many(
    request: Request, environ: dict, start_response: Callable, forget: Callable[[str, str], None]
) -> Iterable[bytes]:
    root = ET.fromstring(read_body(environ) or b"<Delete/>")
    quiet = False
    rows = []
    for node in root:
        name = node.tag.rsplit("}", 1)[-1]
        if name == "Quiet":
            quiet = (node.text or "").strip().lower() == "true"
        if name != "Object":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in node}
        outcome = delete_one(
            request.bucket,
            fields.get("Key", ""),
            fields.get("VersionId"),
            fields.get("ETag"),
            _bypass(request),
        )
        if not outcome.code:
            forget(request.bucket, outcome.key)
        rows.append(_row(outcome, quiet))
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult {_NS}>{"".join(rows)}</DeleteResult>'
    ).encode()
    return respond(start_response, "200 OK", body)


def _row(outcome: Outcome, quiet: bool) -> str:
    key = f"<Key>{escape(outcome.key)}</Key>"
    version = f"<VersionId>{outcome.version_id}</VersionId>" if outcome.version_id else ""
    if outcome.code:
        return (
            f"<Error>{key}{version}<Code>{outcome.code}</Code>"
            f"<Message>{escape(outcome.message)}</Message></Error>"
        )
    if quiet:
        return ""
    marker = ""
    if outcome.marker_version:
        marker = "<DeleteMarker>true</DeleteMarker>"
        if not outcome.version_id:
            marker += f"<DeleteMarkerVersionId>{outcome.marker_version}</DeleteMarkerVersionId>"
    return f"<Deleted>{key}{version}{marker}</Deleted>"


# -- Object Lock -----------------------------------------------------------------------------


def _until(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).astimezone(UTC)


def _lock_call(request: Request, environ: dict, start_response: Callable) -> Iterable[bytes] | None:
    from moto.s3.models import FakeKey

    found = backend().get_object(request.bucket, request.key, version_id=request.param("versionId"))
    if not isinstance(found, FakeKey):
        return None  # moto answers NoSuchKey / NoSuchVersion
    none = (
        "404 Not Found",
        "NoSuchObjectLockConfiguration",
        "The specified object does not have a ObjectLock configuration",
    )
    if request.method == "GET" and "retention" in request.query:
        if not found.lock_mode:
            return error(start_response, *none)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Retention {_NS}><Mode>{found.lock_mode}'
            f"</Mode><RetainUntilDate>{found.lock_until}</RetainUntilDate></Retention>"
        )
        return respond(start_response, "200 OK", body.encode())
    if request.method == "GET":
        if not found.lock_legal_status:
            return error(start_response, *none)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><LegalHold {_NS}><Status>'
            f"{found.lock_legal_status}</Status></LegalHold>"
        )
        return respond(start_response, "200 OK", body.encode())
    if request.method == "PUT" and "retention" in request.query:
        return _put_retention(request, environ, start_response, found)
    return None


def _put_retention(
    request: Request, environ: dict, start_response: Callable, found: Any
) -> Iterable[bytes] | None:
    """Refuse what S3 refuses: weakening COMPLIANCE, or GOVERNANCE without the bypass."""
    fields = {
        node.tag.rsplit("}", 1)[-1]: (node.text or "").strip()
        for node in ET.fromstring(read_body(environ) or b"<Retention/>").iter()
    }
    now = datetime.now(UTC)
    held = _until(found.lock_until)
    if not found.lock_mode or held is None or held <= now:
        return None
    new_until = _until(fields.get("RetainUntilDate"))
    weaker = fields.get("Mode") != found.lock_mode or new_until is None or new_until < held
    if weaker and (found.lock_mode == "COMPLIANCE" or not _bypass(request)):
        return error(start_response, "403 Forbidden", "AccessDenied", "Access Denied")
    return None
