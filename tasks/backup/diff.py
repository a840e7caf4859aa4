"""Two bucket listings merged as streams (S3 lists keys in UTF-8 byte order), so a diff of a
billion keys holds one page of each listing in memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from tasks.core.s3 import iter_objects

#: Keys coldflow keeps in a backup bucket for itself (the deleted-keys ledger).
RESERVED = ".coldflow-backup/"


@dataclass(frozen=True)
class Listed:
    """One object as a listing shows it."""

    key: str
    size: int
    etag: str
    modified: datetime
    storage_class: str = "STANDARD"

    @classmethod
    def from_s3(cls, obj: dict) -> Listed:
        return cls(
            obj["Key"],
            int(obj["Size"]),
            obj.get("ETag", "").strip('"'),
            obj["LastModified"],
            obj.get("StorageClass", "STANDARD"),
        )

    def as_entry(self) -> dict[str, Any]:
        """A small, picklable record for a batch that travels with its task."""
        return {"key": self.key, "size": self.size, "etag": self.etag}


class Passed:
    """How far a listing has got, and which of coldflow's own keys it showed on the way: a
    whole-bucket backup learns from its listing whether the deleted-keys ledger exists."""

    def __init__(self) -> None:
        self.last = ""
        self.done = False
        self.reserved: set[str] = set()

    def shown(self, key: str) -> bool | None:
        """Whether the listing showed ``key``; None while it has not got that far."""
        if key in self.reserved:
            return True
        return False if self.done or self.last.encode() > key.encode() else None


def listed(
    client: Any, bucket: str, prefix: str, passed: Passed | None = None, **kwargs: Any
) -> Iterator[Listed]:
    """Every object under ``prefix`` but coldflow's own, in key order (listed by key ranges
    ahead of the comparison, memory bounded); ``passed`` follows the listing."""
    for obj in iter_objects(client, bucket, prefix, **kwargs):
        key = obj["Key"]
        if passed is not None:
            passed.last = key
        if key.startswith(RESERVED):
            if passed is not None:
                passed.reserved.add(key)
            continue
        yield Listed.from_s3(obj)
    if passed is not None:
        passed.done = True


def merge(
    a: Iterable[Listed], b: Iterable[Listed]
) -> Iterator[tuple[str, Listed | None, Listed | None]]:
    """(key, in a, in b) for every key of either listing, in byte order."""
    ia, ib = iter(a), iter(b)
    x, y = next(ia, None), next(ib, None)
    while x is not None or y is not None:
        kx = x.key.encode() if x is not None else None
        ky = y.key.encode() if y is not None else None
        if y is None or (x is not None and kx < ky):
            yield x.key, x, None
            x = next(ia, None)
        elif x is None or ky < kx:
            yield y.key, None, y
            y = next(ib, None)
        else:
            yield x.key, x, y
            x, y = next(ia, None), next(ib, None)


class Change(StrEnum):
    """What a key needs in an incremental backup."""

    NEW = "new"  # not in the backup: copy
    CHANGED = "changed"  # size differs: copy
    CHECK = "check"  # same size, other ETag: the recorded source ETag decides
    SAME = "same"
    DELETED = "deleted"  # only in the backup: tag it
    TAGGED = "tagged"  # only in the backup and tagged already
    REAPPEARED = "reappeared"  # tagged deleted, back in the source: untag (copy if changed)


def classify(
    source: Listed | None,
    backup: Listed | None,
    deleted_before: bool,
    cutoff: datetime | None = None,
) -> Change:
    """The change one key needs. ``cutoff``: source objects last modified before it are not
    examined further than their size (``modified_within_hours``)."""
    if source is None:
        return Change.TAGGED if deleted_before else Change.DELETED
    if backup is None:
        return Change.NEW
    if deleted_before:
        return Change.REAPPEARED
    if source.size != backup.size:
        return Change.CHANGED
    if source.etag == backup.etag or (cutoff is not None and source.modified < cutoff):
        return Change.SAME
    return Change.CHECK


class SortedKeys:
    """Membership in a sorted file of keys (one escaped key a line), asked in key order."""

    def __init__(self, lines: Iterable[str]) -> None:
        from tasks.formats.ledger import unescape_key

        # ``lines`` is first read at the first question (it may be fetched then)
        self._keys = (unescape_key(line.rstrip("\n")) for line in lines)
        self._current: str | None = None
        self._started = False

    def __contains__(self, key: str) -> bool:
        if not self._started:
            self._current, self._started = next(self._keys, None), True
        wanted = key.encode()
        while self._current is not None and self._current.encode() < wanted:
            self._current = next(self._keys, None)
        return self._current == key


def check_prefix(prefix: str) -> str:
    """A backup prefix: relative, and not coldflow's own folder."""
    from tasks.core.errors import InputError

    if prefix.startswith("/") or prefix.startswith(RESERVED):
        raise InputError(f"prefix {prefix!r} must be relative and not under {RESERVED}")
    return prefix


def make_dir(path: str) -> str:
    """``path``, created if needed (a parent for temporary work folders)."""
    import os

    os.makedirs(path, exist_ok=True)
    return path
