"""S3's checksums for the loopback endpoint, where moto accepts and stores whatever it is sent.

- ``Content-MD5`` and ``x-amz-checksum-<algorithm>`` (header or aws-chunked trailer) are
  checked on PutObject and UploadPart: ``400 BadDigest`` on a mismatch, nothing stored;
- an upload that sent no checksum gets a full-object CRC64NVME, as S3 stores since 2025;
- multipart uploads keep each part's checksum and size; CompleteMultipartUpload checks the
  part checksums it lists (``InvalidPart``) and the object checksum it sends (``BadDigest``):
  FULL_OBJECT CRCs over the whole object, COMPOSITE ones as the checksum of the part
  checksums with ``-N``; HeadObject and GetObject both show the ``-N``;
- GetObject and HeadObject with ``partNumber`` serve that part; GetObjectAttributes answers
  ``ObjectParts``.

CRC32, CRC32C and CRC64NVME come from ``awscrt`` (AWS's common runtime, the same code
botocore uses for CRC64NVME with its ``crt`` extra); SHA-1 and SHA-256 from hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

from awscrt import checksums as crt

from loopback.request import (
    Request,
    backend,
    captured,
    error,
    read_body,
    respond,
    with_headers,
)

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_CRCS: dict[str, tuple[Callable[[bytes, int], int], int]] = {
    "CRC32": (crt.crc32, 4),
    "CRC32C": (crt.crc32c, 4),
    "CRC64NVME": (crt.crc64nvme, 8),
}
_TRAILER = re.compile(rb"x-amz-checksum-(\w+):\s*([A-Za-z0-9+/=]+)")


class Running:
    """A checksum of bytes fed in pieces (``update``), as S3 computes it."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm.upper()
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        self._crc = 0
        self._hash = None if self.algorithm in _CRCS else hashlib.new(self.algorithm.lower())

    def update(self, data: bytes) -> Running:
        if self._hash is not None:
            self._hash.update(data)
        else:
            self._crc = _CRCS[self.algorithm][0](data, self._crc)
        return self

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(_CRCS[self.algorithm][1], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def b64(algorithm: str, data: bytes) -> str:
    """The base64 checksum of ``data``, as S3 shows it."""
    return Running(algorithm).update(data).b64()


def sent(headers: Any, raw_body: bytes = b"") -> tuple[str | None, str | None]:
    """(algorithm, value) of the ``x-amz-checksum-*`` a request carries, in a header or an
    aws-chunked trailer."""
    for algorithm in ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if value:
            return algorithm, value
    trailer = headers.get("x-amz-trailer", "")
    if trailer.lower().startswith("x-amz-checksum-"):
        found = _TRAILER.search(raw_body or b"")
        if found:
            return found.group(1).decode().upper(), found.group(2).decode()
        return trailer[len("x-amz-checksum-") :].upper(), None
    return None, None


class BadDigest(Exception):
    """What S3 answers ``400 BadDigest`` to."""


def verify(headers: Any, body: bytes, raw_body: bytes = b"") -> tuple[str | None, str | None]:
    """Check a body against its ``Content-MD5`` and ``x-amz-checksum-*``; returns the
    checksum sent (algorithm, value). Raises :class:`BadDigest`."""
    md5 = headers.get("Content-MD5") or headers.get("content-md5")
    if md5 and base64.b64encode(hashlib.md5(body).digest()).decode() != md5.strip():
        raise BadDigest("The Content-MD5 you specified did not match what we received.")
    algorithm, value = sent(headers, raw_body)
    if algorithm and value and b64(algorithm, body) != value.strip():
        raise BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")
    return algorithm, value


def bad_digest(start_response: Callable, message: str) -> list[bytes]:
    return error(start_response, "400 Bad Request", "BadDigest", message)


# -- multipart uploads -------------------------------------------------------------------


def upload_algorithm(upload: Any) -> tuple[str | None, str | None]:
    """(algorithm, type) a multipart upload was created with."""
    meta = upload.metadata
    algorithm = meta.get("x-amz-checksum-algorithm")
    kind = meta.get("x-amz-checksum-type")
    if algorithm and not kind:
        kind = "FULL_OBJECT" if algorithm.upper() == "CRC64NVME" else "COMPOSITE"
    return (algorithm.upper() if algorithm else None), kind


def complete(
    request: Request, environ: dict, start_response: Callable, app: Callable
) -> Iterable[bytes] | None:
    """CompleteMultipartUpload as S3 checks it; None lets moto answer (no such upload)."""
    store = backend()
    upload_id = request.param("uploadId") or ""
    try:
        upload = store.get_bucket(request.bucket).multiparts.get(upload_id)
    except Exception:
        return None
    if upload is None:
        return None
    body = read_body(environ)
    listed = _listed_parts(body)
    algorithm, kind = upload_algorithm(upload)
    parts = []
    for number, checksums in listed:
        part = upload.parts.get(number)
        if part is None:
            return None  # moto answers InvalidPart
        stored = getattr(part, "loopback_checksum", None)
        for name, value in checksums.items():
            if stored is None or stored[0] != name or stored[1] != value:
                return error(
                    start_response,
                    "400 Bad Request",
                    "InvalidPart",
                    f"The {name} of part {number} does not match the uploaded part.",
                )
        parts.append(part)
    value = _object_checksum(parts, algorithm or "CRC64NVME", kind or "FULL_OBJECT")
    claimed_algorithm, claimed = sent(request.headers)
    if claimed and (
        claimed_algorithm != (algorithm or "CRC64NVME")
        or claimed.split("-")[0] != value.split("-")[0]
    ):
        return bad_digest(
            start_response,
            f"The {claimed_algorithm} you specified did not match the calculated checksum.",
        )
    status, headers, answer = captured(app, environ)
    if status.startswith("200"):
        key = store.get_object(request.bucket, request.key)
        if key is not None:
            key.checksum_algorithm = algorithm or "CRC64NVME"
            key.checksum_type = kind or "FULL_OBJECT"
            key.checksum_value, _, count = value.partition("-")
            key.checksum_parts = int(count) if count else None
            key.loopback_parts = [(p.size, getattr(p, "loopback_checksum", None)) for p in parts]
        name = f"Checksum{algorithm or 'CRC64NVME'}"
        shown = f"<{name}>{value}</{name}><ChecksumType>{kind or 'FULL_OBJECT'}</ChecksumType>"
        answer = answer.replace(
            b"</CompleteMultipartUploadResult>",
            shown.encode() + b"</CompleteMultipartUploadResult>",
        )
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer))))
    start_response(status, headers)
    return [answer]


def _listed_parts(body: bytes) -> list[tuple[int, dict[str, str]]]:
    """The (part number, {algorithm: checksum}) a CompleteMultipartUpload body lists."""
    found = []
    for node in ET.fromstring(body or b"<a/>").iter():
        if not node.tag.endswith("Part"):
            continue
        number, checksums = 0, {}
        for child in node:
            name = child.tag.rsplit("}", 1)[-1]
            if name == "PartNumber":
                number = int((child.text or "0").strip())
            elif name.startswith("Checksum") and name[8:] in ALGORITHMS:
                checksums[name[8:]] = (child.text or "").strip()
        found.append((number, checksums))
    return found


def _object_checksum(parts: list[Any], algorithm: str, kind: str) -> str:
    if kind == "COMPOSITE":
        joined = Running(algorithm)
        for part in parts:
            stored = getattr(part, "loopback_checksum", None)
            if stored is None or stored[0] != algorithm:
                stored = (algorithm, b64(algorithm, part.value))
            joined.update(base64.b64decode(stored[1]))
        return f"{joined.b64()}-{len(parts)}"
    whole = Running(algorithm)
    for part in parts:
        whole.update(part.value)
    return whole.b64()


def record_part(part: Any, upload: Any, algorithm: str | None, value: str | None) -> None:
    """Keep an uploaded part's checksum: the one sent, or the upload's algorithm computed."""
    if not algorithm:
        algorithm = upload_algorithm(upload)[0]
    if algorithm and not value:
        value = b64(algorithm, part.value)
    part.loopback_checksum = (algorithm, value) if algorithm else None


# -- reading what was stored ---------------------------------------------------------------


def qualified(key: Any) -> str | None:
    """The checksum as S3 shows it (``-N`` for composite)."""
    if not key.checksum_value:
        return None
    if key.checksum_type == "COMPOSITE" and key.checksum_parts:
        return f"{key.checksum_value}-{key.checksum_parts}"
    return key.checksum_value


def _key(request: Request) -> Any:
    try:
        return backend().get_object(
            request.bucket, request.key, version_id=request.param("versionId")
        )
    except Exception:
        return None


def read(
    request: Request, environ: dict, start_response: Callable, app: Callable
) -> Iterable[bytes] | None:
    """GetObject / HeadObject: a part by ``partNumber``, and checksums with their ``-N``."""
    number = request.param("partNumber")
    checking = request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    if number is None and not checking:
        return None
    key = _key(request)
    if key is None or not hasattr(key, "checksum_value"):
        return None
    headers: dict[str, str] = {}
    if number is None:
        if environ.get("HTTP_RANGE"):
            return None  # a range has no full-object checksum
        shown = qualified(key)
        if shown:
            headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = shown
            headers["x-amz-checksum-type"] = key.checksum_type or "FULL_OBJECT"
        return app(environ, with_headers(start_response, headers, success_only=True))
    parts = getattr(key, "loopback_parts", None) or [(key.size, None)]
    index = int(number)
    if not 1 <= index <= len(parts):
        return error(
            start_response,
            "416 Requested Range Not Satisfiable",
            "InvalidPartNumber",
            "The requested partnumber is not satisfiable",
            head=request.method == "HEAD",
        )
    start = sum(size for size, _ in parts[: index - 1])
    size, checksum = parts[index - 1]
    if len(parts) > 1:
        headers["x-amz-mp-parts-count"] = str(len(parts))
    if checking and checksum and checksum[0]:
        headers[f"x-amz-checksum-{checksum[0].lower()}"] = checksum[1]
    environ["QUERY_STRING"] = re.sub(r"(^|&)partNumber=\d+", "", environ["QUERY_STRING"])
    if request.method == "GET":
        environ["HTTP_RANGE"] = f"bytes={start}-{start + size - 1}"
        return app(environ, with_headers(start_response, headers, success_only=True))
    status, answer_headers, _ = captured(app, environ)
    if status.startswith("200"):
        status = "206 Partial Content"
        headers["Content-Range"] = f"bytes {start}-{start + size - 1}/{key.size}"
        headers["Content-Length"] = str(size)
    with_headers(start_response, headers)(status, answer_headers)
    return [b""]


def attributes(request: Request, start_response: Callable) -> Iterable[bytes] | None:
    """GetObjectAttributes as S3 answers it, ``ObjectParts`` included."""
    key = _key(request)
    if key is None or not hasattr(key, "checksum_value"):
        return None
    wanted = {a.strip() for a in request.headers.get("x-amz-object-attributes", "").split(",")}
    fields = []
    if "ETag" in wanted:
        fields.append(f"<ETag>{key.etag.strip(chr(34))}</ETag>")
    if "Checksum" in wanted and key.checksum_value:
        fields.append(
            f"<Checksum><Checksum{key.checksum_algorithm}>{key.checksum_value}"
            f"</Checksum{key.checksum_algorithm}><ChecksumType>"
            f"{key.checksum_type or 'FULL_OBJECT'}</ChecksumType></Checksum>"
        )
    parts = getattr(key, "loopback_parts", None)
    if "ObjectParts" in wanted and parts:
        fields.append(_object_parts(request, parts))
    if "StorageClass" in wanted:
        fields.append(f"<StorageClass>{escape(key.storage_class)}</StorageClass>")
    if "ObjectSize" in wanted:
        fields.append(f"<ObjectSize>{key.size}</ObjectSize>")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><GetObjectAttributesResponse '
        f'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{"".join(fields)}'
        "</GetObjectAttributesResponse>"
    ).encode()
    headers = [("Last-Modified", key.last_modified_RFC1123)]
    if key.version_id != "null":
        headers.append(("x-amz-version-id", key.version_id))
    return respond(start_response, "200 OK", body, headers)


def _object_parts(request: Request, parts: list[tuple[int, Any]]) -> str:
    marker = int(request.headers.get("x-amz-part-number-marker") or 0)
    most = int(request.headers.get("x-amz-max-parts") or 1000)
    shown = list(enumerate(parts, start=1))[marker : marker + most]
    rows = []
    for number, (size, checksum) in shown:
        digest = ""
        if checksum and checksum[0]:
            digest = f"<Checksum{checksum[0]}>{checksum[1]}</Checksum{checksum[0]}>"
        rows.append(f"<Part><PartNumber>{number}</PartNumber><Size>{size}</Size>{digest}</Part>")
    last = shown[-1][0] if shown else marker
    return (
        f"<ObjectParts><PartsCount>{len(parts)}</PartsCount>"
        f"<PartNumberMarker>{marker}</PartNumberMarker>"
        f"<NextPartNumberMarker>{last}</NextPartNumberMarker><MaxParts>{most}</MaxParts>"
        f"<IsTruncated>{str(last < len(parts)).lower()}</IsTruncated>{''.join(rows)}"
        "</ObjectParts>"
    )
