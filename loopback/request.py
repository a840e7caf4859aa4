"""What the loopback endpoint's layers see of a request, and how they answer one.

Every layer in front of moto (speed model, faults, S3 semantics, archive tiers, tags, vaults,
Batch Operations) works on a :class:`Request` parsed once from the WSGI environ, and answers
with the small helpers here, so that an S3 error looks the same whichever layer sends it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

#: The account moto serves (its default); the loopback has one account.
ACCOUNT = "123456789012"
#: The first path segment of every S3 Control API request.
CONTROL_API = "v20180820"
#: The access key id in a SigV4 Authorization header, and the service it signed for.
SIGNER = re.compile(r"Credential=([^/,\s]+)/")
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


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
            setting = next((BUCKET_SETTINGS[n] for n in q if n in BUCKET_SETTINGS), None)
            if setting is not None:  # GET/PUT/DELETE ?versioning and the like
                return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(
                    self.method, self.method
                ) + setting
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

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None


#: A bucket's settings by query sub-resource, named as the API's operations name them
#: (``GetBucketVersioning``, ``PutObjectLockConfiguration``); listings stay ``ListObjects``.
BUCKET_SETTINGS = {
    "versioning": "BucketVersioning",
    "encryption": "BucketEncryption",
    "object-lock": "ObjectLockConfiguration",
    "lifecycle": "BucketLifecycleConfiguration",
    "tagging": "BucketTagging",
    "policy": "BucketPolicy",
    "location": "BucketLocation",
    "acl": "BucketAcl",
    "notification": "BucketNotificationConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
}


def parse(environ: dict) -> Request:
    """The request in ``environ``, with its key decoded as S3 stores it."""
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
    for name in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
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


def error_body(code: str, message: str, **fields: str) -> bytes:
    """S3's XML error document."""
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message>{extra}<RequestId>loopback</RequestId></Error>"
    ).encode()


def respond(
    start_response: Callable,
    status: str,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    """Answer with ``status`` and an XML ``body``."""
    start_response(
        status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), *headers]
    )
    return [body]


def error(
    start_response: Callable,
    status: str,
    code: str,
    message: str,
    head: bool = False,
    **fields: str,
) -> list[bytes]:
    """Answer with an S3 error (no body for a HEAD, as S3)."""
    body = b"" if head else error_body(code, message, **fields)
    return respond(start_response, status, body, [("x-amz-request-id", "loopback")])


def read_body(environ: dict) -> bytes:
    """The request's body, read whole and put back so that moto can read it too."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def served(app: Callable, environ: dict, start_response: Callable) -> tuple[list[bytes], str]:
    """moto's answer to a request, and its status line."""
    captured = [""]

    def record(status: str, headers: list, exc_info: Any = None) -> Any:
        captured[0] = status
        return start_response(status, headers, exc_info)

    answer = list(app(environ, record))
    return answer, captured[0]


def captured(app: Callable, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """moto's answer held back: (status, headers, body), for a layer that rewrites it."""
    held: dict[str, Any] = {}

    def hold(status: str, headers: list, exc_info: Any = None) -> Callable:
        held["status"], held["headers"] = status, headers
        return lambda data: None

    body = b"".join(app(environ, hold))
    return held["status"], list(held["headers"]), body


def with_headers(
    start_response: Callable, extra: dict[str, str], success_only: bool = False
) -> Callable:
    """A ``start_response`` that sets (replaces) ``extra`` headers on the answer (with
    ``success_only``, on a 2xx answer only: S3 sends no checksums with an error)."""
    names = {k.lower() for k in extra}

    def rewrite(status: str, headers: list, exc_info: Any = None) -> Any:
        if success_only and not status.startswith("2"):
            return start_response(status, headers, exc_info)
        kept = [(k, v) for k, v in headers if k.lower() not in names]
        return start_response(status, kept + list(extra.items()), exc_info)

    return rewrite


def backend() -> Any:
    """moto's S3 store in this process (the endpoint runs in-process)."""
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]
