"""Object listings as sorted files on scratch: written while S3 pages stream in, compared by merge.

Nothing here holds a whole listing in memory: a prefix of a million objects is
a file of a million lines, sorted by byte order (GNU ``sort`` if S3's own order
needs mending), read back one line at a time.
"""

from __future__ import annotations

import heapq
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, NamedTuple

from tasks.core.errors import UnsupportedKeyError

_UNSAFE_KEY = re.compile(r"[\x00-\x1f\x7f]")
#: How many keys of each kind a report names; counts are always complete.
REPORT_SAMPLE = 20


class ObjectEntry(NamedTuple):
    """One source object as listed: key, size, ETag (no quotes), last modified (UTC, seconds)."""

    key: str
    size: int
    etag: str
    modified: str

    @classmethod
    def from_s3(cls, obj: dict) -> ObjectEntry:
        modified = obj["LastModified"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return cls(obj["Key"], int(obj["Size"]), obj.get("ETag", "").strip('"'), modified)

    def to_line(self) -> str:
        return f"{self.key}\t{self.size}\t{self.etag}\t{self.modified}\n"

    @classmethod
    def from_line(cls, line: str) -> ObjectEntry:
        key, size, etag, modified = line.rstrip("\n").split("\t")
        return cls(key, int(size), etag, modified)

    def untrimmed_line(self) -> str:
        """The line ``aws s3 ls --recursive`` prints for this object (times in UTC)."""
        return f"{self.modified} {self.size:>10} {self.key}\n"

    @classmethod
    def from_untrimmed_line(cls, line: str) -> ObjectEntry:
        modified, rest = line[:19], line[20:].rstrip("\n").lstrip(" ")
        size, key = rest.split(" ", 1)
        return cls(key, int(size), "", modified)


def is_placeholder(key: str, size: int) -> bool:
    """A zero-byte "directory" marker: listed by S3, left out of listings and tarballs."""
    return key.endswith("/") and size == 0


def check_key(key: str) -> None:
    """Refuse keys that the listings can't represent or that tar would not extract to themselves.

    Tabs and newlines would break the listing formats; ``.``, ``..`` and empty
    path segments are rewritten or refused by tar on extraction, so such an
    archive could not be restored to the same keys.
    """
    if _UNSAFE_KEY.search(key):
        raise UnsupportedKeyError(
            f"key {key!r} contains a control character (tab, newline, ...); the archive "
            "listings can't represent it. Rename it before archiving."
        )
    if any(part in {"", ".", ".."} for part in key.split("/")):
        raise UnsupportedKeyError(
            f"key {key!r} has an empty, '.' or '..' path segment; tar would not restore it "
            "to the same key. Rename it before archiving."
        )


def entries_sorted(path: Path) -> bool:
    with open(path, "rb") as f:
        previous = b""
        for line in f:
            if line < previous:
                return False
            previous = line
    return True


def sort_file(path: Path) -> None:
    """Sort a file's lines by byte order in place, in bounded memory (GNU sort spills to disk)."""
    if entries_sorted(path):
        return
    env = dict(os.environ, LC_ALL="C")
    subprocess.run(
        ["sort", "-S", "128M", "-T", str(path.parent), "-o", str(path), str(path)],
        check=True,
        env=env,
    )


def write_lines(path: Path, lines: Iterable[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            count += 1
    return count


def read_entries(path: Path) -> Iterator[ObjectEntry]:
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield ObjectEntry.from_line(line)


def listing_line(trimmed_key: str, size: int) -> str:
    """A line of ``_file_listing_s3.txt`` / ``_file_listing_tar.txt``."""
    return f"{trimmed_key}\t{size}\n"


def merge_sorted_files(paths: Iterable[Path], out: Path) -> None:
    """Merge files that are each sorted into one sorted file."""
    handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
    try:
        with open(out, "wb") as f:
            f.writelines(heapq.merge(*handles))
    finally:
        for h in handles:
            h.close()
    sort_file(out)


@dataclass
class Drift:
    """How current objects differ from a recorded listing; counts complete, keys sampled."""

    verified: int = 0
    changed: list[str] = field(default_factory=list)
    appeared: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    n_changed: int = 0
    n_appeared: int = 0
    n_vanished: int = 0

    @property
    def clean(self) -> bool:
        return not (self.n_changed or self.n_appeared)

    def note(self, kind: str, key: str) -> None:
        setattr(self, f"n_{kind}", getattr(self, f"n_{kind}") + 1)
        keys = getattr(self, kind)
        if len(keys) < REPORT_SAMPLE:
            keys.append(key)


def same_object(recorded: ObjectEntry, current: ObjectEntry) -> bool:
    """Whether a current object is the one recorded: size and ETag, or size and time when
    the record has no ETag (listings of earlier runs keep key, size and time only)."""
    if recorded.size != current.size:
        return False
    if recorded.etag:
        return recorded.etag == current.etag
    return recorded.modified == current.modified


def compare_entries(
    recorded: Iterable[ObjectEntry],
    current: Iterable[ObjectEntry],
    on_verified: Callable[[ObjectEntry], Any] | None = None,
    same: Callable[[ObjectEntry, ObjectEntry], bool] = same_object,
) -> Drift:
    """Merge-join two key-sorted listings; ``on_verified`` gets every current entry that matches."""
    drift = Drift()
    rec_iter, cur_iter = iter(recorded), iter(current)
    rec, cur = next(rec_iter, None), next(cur_iter, None)
    while rec is not None or cur is not None:
        rkey = rec.key.encode() if rec is not None else None
        ckey = cur.key.encode() if cur is not None else None
        if cur is None or (rec is not None and rkey < ckey):
            drift.note("vanished", rec.key)
            rec = next(rec_iter, None)
        elif rec is None or ckey < rkey:
            drift.note("appeared", cur.key)
            cur = next(cur_iter, None)
        else:
            if same(rec, cur):
                drift.verified += 1
                if on_verified is not None:
                    on_verified(cur)
            else:
                drift.note("changed", cur.key)
            rec, cur = next(rec_iter, None), next(cur_iter, None)
    return drift
