"""S3's semantics where moto is kinder, always on: the loopback answers as S3 does.

:func:`install` wraps a few of moto's own methods (once per process), for what can only be
done where moto stores an object: checksums checked before anything is stored and a
CRC64NVME for uploads that sent none (:mod:`loopback.checksums`), and ETags that are not an
MD5 digest for SSE-KMS, DSSE-KMS and SSE-C objects ("Objects encrypted by SSE-C or SSE-KMS
have ETags that are not an MD5 digest of their object data", S3 API reference, Object).
:func:`handle` and :func:`read` answer the requests moto gets wrong at the HTTP level:
deletes and Object Lock (:mod:`loopback.deletes`), multipart completion, parts and object
attributes (:mod:`loopback.checksums`), and SSE-C reads.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from loopback import checksums, deletes
from loopback.request import Request, backend, error, with_headers

#: Server-side encryption under which S3's ETag is not the MD5 of the body.
KMS = ("aws:kms", "aws:kms:dsse")
_SSE_C = "x-amz-server-side-encryption-customer-algorithm"
_SSE_C_MD5 = "x-amz-server-side-encryption-customer-key-md5"
#: The SSE-C headers of the request this thread is serving (moto's methods don't see them).
_current = threading.local()
_installed = [False]


def opaque_etag(multipart_suffix: str = "") -> str:
    """An ETag that is not an MD5 of the body: 32 hex characters, ``-N`` kept."""
    return hashlib.md5(uuid.uuid4().bytes).hexdigest() + multipart_suffix


def _bucket_encryption(bucket: Any) -> str | None:
    rule = (bucket.encryption or {}).get("Rule", {})
    return rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")


def install() -> None:
    """Wrap moto's put, part upload and object creation (once per process)."""
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    if _installed[0]:
        return
    put_response, part_response = S3Response.put_object, S3Response.upload_part
    put_model, part_model = S3Backend.put_object, S3Backend.upload_part

    def put_object(self: Any) -> Any:
        _check(self)
        return put_response(self)

    def upload_part(self: Any) -> Any:
        algorithm, value = _check(self)
        answer = part_response(self)
        bucket = self.backend.get_bucket(self.bucket_name)
        upload = bucket.multiparts[self._get_param("uploadId")]
        part = upload.parts[self._get_int_param("partNumber")]
        checksums.record_part(part, upload, algorithm, value)
        return answer

    def put_object_model(
        self: Any, bucket_name: str, key_name: str, value: bytes, *args: Any, **kwargs: Any
    ) -> Any:
        key = put_model(self, bucket_name, key_name, value, *args, **kwargs)
        etag, multipart = kwargs.get("etag"), kwargs.get("multipart")
        if multipart is not None and etag is None:
            key.multipart = None  # a copy: one part, whatever its source was
        if kwargs.get("checksum_value") is None:
            key.checksum_algorithm = "CRC64NVME"
            key.checksum_value = checksums.b64("CRC64NVME", value)
        key.checksum_type = "FULL_OBJECT"
        sse_c = getattr(multipart, "loopback_sse_c", None) or getattr(_current, "sse_c", None)
        if sse_c:
            key.loopback_sse_c = sse_c
        if key.encryption in KMS or sse_c:
            suffix = "-" + etag.split("-")[1] if etag and "-" in etag else ""
            key._etag = opaque_etag(suffix)
        return key

    def upload_part_model(
        self: Any, bucket_name: str, multipart_id: str, part_id: int, value: bytes
    ) -> Any:
        part = part_model(self, bucket_name, multipart_id, part_id, value)
        upload = self.get_bucket(bucket_name).multiparts[multipart_id]
        encrypted = upload.sse_encryption or _bucket_encryption(self.get_bucket(bucket_name))
        if encrypted in KMS or getattr(upload, "loopback_sse_c", None):
            part._etag = opaque_etag()
        return part

    S3Response.put_object = put_object
    S3Response.upload_part = upload_part
    S3Backend.put_object = put_object_model
    S3Backend.upload_part = upload_part_model
    _installed[0] = True


def _check(response: Any) -> tuple[str | None, str | None]:
    """Check the body moto is about to store against the digests sent with it."""
    from moto.s3.exceptions import S3ClientError

    try:
        return checksums.verify(response.headers, response.body or b"", response.raw_body)
    except checksums.BadDigest as bad:
        raise S3ClientError("BadDigest", str(bad)) from None


def handle(
    request: Request, environ: dict, start_response: Callable, app: Callable, tiers: Any
) -> Iterable[bytes] | None:
    """Answer the writes and calls moto gets wrong, or None to pass ``request`` on."""
    answer = deletes.handle(request, environ, start_response, tiers.forget)
    if answer is not None:
        return answer
    if request.method == "POST" and "uploadId" in request.query:
        return checksums.complete(request, environ, start_response, app)
    if request.method == "GET" and "attributes" in request.query and request.key:
        return checksums.attributes(request, start_response)
    sse_c = request.headers.get(_SSE_C)
    if sse_c and request.method in ("PUT", "POST") and request.key:
        return _sse_c_write(request, environ, start_response, app, sse_c)
    return None


def _sse_c_write(
    request: Request, environ: dict, start_response: Callable, app: Callable, algorithm: str
) -> Iterable[bytes]:
    """An SSE-C upload: moto stores it as is; the object remembers its customer key's MD5."""
    sse_c = (algorithm, request.headers.get(_SSE_C_MD5, ""))
    _current.sse_c = sse_c
    try:
        if "uploads" in request.query:
            answer = list(app(environ, start_response))
            _mark_uploads(request.bucket, request.key, sse_c)
            return answer
        return list(app(environ, start_response))
    finally:
        _current.sse_c = None


def _mark_uploads(bucket: str, key: str, sse_c: tuple[str, str]) -> None:
    for upload in backend().get_bucket(bucket).multiparts.values():
        if upload.key_name == key and not hasattr(upload, "loopback_sse_c"):
            upload.loopback_sse_c = sse_c


def read(
    request: Request, environ: dict, start_response: Callable, app: Callable
) -> Iterable[bytes] | None:
    """GetObject / HeadObject: SSE-C objects need their key; parts and checksums as S3."""
    if (
        request.method not in ("GET", "HEAD")
        or not request.key
        or request.query.keys()
        - {
            "partNumber",
            "versionId",
        }
    ):
        return None
    try:
        key = backend().get_object(
            request.bucket, request.key, version_id=request.param("versionId")
        )
    except Exception:
        return None
    sse_c = getattr(key, "loopback_sse_c", None)
    if sse_c:
        if request.headers.get(_SSE_C_MD5, "") != sse_c[1]:
            return error(
                start_response,
                "400 Bad Request",
                "InvalidRequest",
                "The object was stored using a form of Server Side Encryption. The correct "
                "parameters must be provided to retrieve the object.",
                head=request.method == "HEAD",
            )
        start_response = with_headers(start_response, {_SSE_C: sse_c[0], _SSE_C_MD5: sse_c[1]})
    answer = checksums.read(request, environ, start_response, app)
    if answer is None and sse_c:
        return app(environ, start_response)
    return answer
