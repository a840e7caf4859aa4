"""S3 Control's restXml for the loopback's Batch Operations jobs: request bodies as plain data,
plain data as response bodies, and S3 Control's ``ErrorResponse`` document (not S3's ``Error``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(node: ET.Element) -> Any:
    """An XML request body as plain data (a ``member`` list becomes a list)."""
    children = list(node)
    if not children:
        return node.text or ""
    if all(local(c.tag) == "member" for c in children):
        return [parse_xml(c) for c in children]
    return {local(c.tag): parse_xml(c) for c in children}


def to_xml(name: str, value: Any) -> str:
    """Plain data as restXml (lists as ``member`` elements, booleans in lower case)."""
    if isinstance(value, dict):
        inner = "".join(to_xml(k, v) for k, v in value.items() if v is not None)
    elif isinstance(value, list):
        inner = "".join(to_xml("member", v) for v in value)
    elif isinstance(value, bool):
        inner = str(value).lower()
    else:
        inner = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{name}>{inner}</{name}>"


def stamp(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def arn_bucket(arn: str) -> str:
    """``arn:aws:s3:::bucket`` → bucket."""
    return arn.split(":::", 1)[-1]


def ok(start_response: Callable, body: str) -> list[bytes]:
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
    start_response(
        "200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(data)))]
    )
    return [data]


def control_error(start_response: Callable, status: str, code: str, message: str) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>loopback</RequestId></ErrorResponse>"
    ).encode()
    start_response(
        status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    )
    return [body]
