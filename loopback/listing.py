"""Faster listings for the loopback endpoint: moto sorts a bucket's every key for every page
of ``ListObjectsV2`` (a 50,000-key bucket takes ~0.4 s a page, ~20 s to list), which is what
made large-prefix tests and benchmarks slow. Here the sorted key names are kept per bucket
and found by bisection; any request that may add or remove keys invalidates them. Listings
with a delimiter, and versioned buckets, go to moto as before. The pages, tokens and keys
returned are moto's own.

moto then renders a page through its generic serializer, which parses every object's
timestamp back from a string: ~0.2 s of CPU a 1,000-key page, enough for the endpoint's own
CPU to bind a parallel listing on the S3 model. The objects of a page (``<Contents>``) are
rendered here instead, byte for byte as moto would (the rest of the answer is still moto's).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

_lock = threading.Lock()
#: Per bucket: [generation, writes in flight]. A write bumps the generation when it arrives
#: and again when it is done, so names cached while it was being served are never reused.
_buckets: dict[str, list[int]] = {}
_names: dict[str, tuple[int, list[str]]] = {}
_installed = [False]


def invalidate(bucket: str | None = None) -> None:
    """Forget the cached listing of ``bucket`` (every bucket without one)."""
    with _lock:
        _buckets.setdefault("*" if bucket is None else bucket, [0, 0])[0] += 1


@contextlib.contextmanager
def writing(bucket: str | None = None) -> Iterator[None]:
    """Mark a request that may add or remove keys of ``bucket`` (every bucket without one)
    while it is served: listings meanwhile are computed afresh and not kept, and a listing
    that starts after it finished sees what it did (S3's read-after-write consistency)."""
    names = [bucket] if bucket is not None else None
    _begin(names)
    try:
        yield
    finally:
        _end(names)


def _begin(names: list[str] | None) -> None:
    with _lock:
        for name in names or ["*"]:
            state = _buckets.setdefault(name, [0, 0])
            state[0] += 1
            state[1] += 1


def _end(names: list[str] | None) -> None:
    with _lock:
        for name in names or ["*"]:
            state = _buckets[name]
            state[0] += 1
            state[1] -= 1


def _sorted_names(bucket: Any) -> list[str]:
    with _lock:
        state = _buckets.setdefault(bucket.name, [0, 0])
        every = _buckets.get("*", [0, 0])
        generation = (state[0], every[0])
        quiet = state[1] == 0 and every[1] == 0
        cached = _names.get(bucket.name)
    if quiet and cached is not None and cached[0] == generation:
        return cached[1]
    names = sorted(bucket.keys.keys())
    with _lock:
        state = _buckets[bucket.name]
        every = _buckets.get("*", [0, 0])
        if (state[0], every[0]) == generation and state[1] == 0 and every[1] == 0:
            _names[bucket.name] = (generation, names)
    return names


@functools.lru_cache(maxsize=4096)
def _timestamp(value: str) -> str:
    """A listed object's ``LastModified`` as moto's serializer writes it."""
    from moto.core.serialize import S3Serializer, TimestampSerializer

    form = S3Serializer.DEFAULT_TIMESTAMP_FORMAT
    return TimestampSerializer(form)._convert_timestamp_to_str(value, form)


def _contents(items: list[dict[str, Any]]) -> str:
    """``<Contents>`` elements for moto's listed objects, members in the API's order."""
    parts = []
    for item in items:
        parts.append(
            f"<Contents><Key>{escape(item['Key'])}</Key>"
            f"<LastModified>{_timestamp(item['LastModified'])}</LastModified>"
            f"<ETag>{escape(item['ETag'])}</ETag>"
        )
        for algorithm in item.get("ChecksumAlgorithm", ()):
            parts.append(f"<ChecksumAlgorithm>{escape(algorithm)}</ChecksumAlgorithm>")
        parts.append(
            f"<Size>{item['Size']}</Size><StorageClass>{escape(item['StorageClass'])}</StorageClass>"
        )
        if "Owner" in item:
            owner = item["Owner"]
            parts.append(
                f"<Owner><DisplayName>{escape(owner['DisplayName'])}</DisplayName>"
                f"<ID>{escape(owner['ID'])}</ID></Owner>"
            )
        parts.append("</Contents>")
    return "".join(parts)


def _serialize_contents_here(original: Any) -> Any:
    """Wrap moto's ``S3Response.list_objects_v2``: the answer it builds is serialized by moto
    without its objects, which :func:`_contents` renders and puts back in their place (right
    after ``IsTruncated``, the member before them)."""
    from moto.core.responses import ActionResult

    marker = "</IsTruncated>"

    def list_objects_v2(self: Any) -> Any:
        serialized = self.serialized

        def fast(action: Any) -> Any:
            result = dict(action.result)
            items = result.pop("Contents", [])
            status, headers, body = serialized(ActionResult(result))
            if items and isinstance(body, str) and marker in body:
                at = body.index(marker) + len(marker)
                body = body[:at] + _contents(items) + body[at:]
            elif items:  # not the shape expected: moto's own rendering
                return serialized(action)
            return status, headers, body

        self.serialized = fast
        try:
            return original(self)
        finally:
            del self.serialized

    list_objects_v2.__wrapped__ = original  # type: ignore[attr-defined]
    return list_objects_v2


def install() -> None:
    """Put the fast paths in front of moto's ``list_objects_v2`` (once per process)."""
    from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend
    from moto.s3.responses import S3Response

    if _installed[0]:
        return
    S3Response.list_objects_v2 = _serialize_contents_here(S3Response.list_objects_v2)
    original = S3Backend.list_objects_v2

    def list_objects_v2(
        self: Any,
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        continuation_token: str | None,
        start_after: str | None,
        max_keys: int,
    ) -> Any:
        if delimiter or getattr(bucket, "is_versioned", False) or not hasattr(bucket, "keys"):
            return original(
                self, bucket, prefix, delimiter, continuation_token, start_after, max_keys
            )
        prefix = prefix or ""
        names = _sorted_names(bucket)
        start = bisect_left(names, prefix)
        after = (
            self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        )
        if after:
            start = max(start, bisect_right(names, after))
        found: list[Any] = []
        for name in names[start:]:
            if not name.startswith(prefix) or len(found) > max_keys:
                break
            key = bucket.keys.get(name)
            if isinstance(key, FakeKey) and not isinstance(key, FakeDeleteMarker):
                found.append(key)
        return self._truncate_result(found, max_keys)

    S3Backend.list_objects_v2 = list_objects_v2
    _installed[0] = True
