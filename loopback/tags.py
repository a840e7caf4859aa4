"""Object tags and copies on the loopback endpoint, where moto differs from S3.

- ``GetObjectTagging`` answers for archived (GLACIER / DEEP_ARCHIVE) objects, as S3 does
  (moto refuses with ``InvalidObjectState``);
- a new object (PUT, copy, completed multipart upload) over an existing key starts with
  no tags but its own, as in S3 (moto merges the old object's tags in);
- ``PutObjectTagging`` with an empty tag set clears the tags (moto answers 500).

Copies *from* an object whose restore is still running are refused in
:mod:`loopback.tiers`, with the other restore rules.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

ACCOUNT = "123456789012"


def _backend() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def _key(bucket: str, key: str) -> Any:
    try:
        return _backend().get_object(bucket, key)
    except Exception:  # no such bucket or key: moto answers as usual
        return None


def _xml(start_response: Callable, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "application/xml"), ("Content-Length", str(len(data)))]
    )
    return [data]


def handle(request: Any, environ: dict, start_response: Callable) -> Iterable[bytes] | None:
    """Answer the tag cases moto gets wrong, clear tags a new object must not inherit, or
    return None to let moto serve the request."""
    query, method = request.query, request.method
    if "tagging" in query and request.key:
        found = _key(request.bucket, request.key)
        if found is None:
            return None
        if method == "GET":
            tags = _backend().tagger.get_tag_dict_for_resource(found.arn)
            sets = "".join(
                f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>"
                for k, v in tags.items()
            )
            return _xml(
                start_response,
                "200 OK",
                '<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="http://s3.amazonaws.com/'
                f'doc/2006-03-01/"><TagSet>{sets}</TagSet></Tagging>',
            )
        if method == "PUT":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            import io

            environ["wsgi.input"] = io.BytesIO(body)
            if not any(node.tag.endswith("Tag") for node in ET.fromstring(body or b"<a/>").iter()):
                _backend().tagger.delete_all_tags_for_resource(found.arn)
                return _xml(start_response, "200 OK", "")
        return None
    new_object = (method == "PUT" and request.key and "partNumber" not in query) or (
        method == "POST" and "uploadId" in query
    )
    copy_source = request.headers.get("x-amz-copy-source", "")
    if copy_source:
        from urllib.parse import unquote

        source = unquote(copy_source.split("?", 1)[0]).lstrip("/")
        if source == f"{request.bucket}/{request.key}":
            new_object = False  # a copy onto itself keeps its tags (TaggingDirective COPY)
    if new_object:
        found = _key(request.bucket, request.key)
        if found is not None:
            _backend().tagger.delete_all_tags_for_resource(found.arn)
    return None
