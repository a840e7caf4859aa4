"""List a prefix as several key ranges at once, in key order.

S3 returns 1,000 keys a request, one page after another: a prefix of 1,000,000 keys is 1,000
round trips in a row. ``ListObjectsV2`` takes ``StartAfter``, so the key space can be cut
into ranges listed at the same time. :func:`list_objects` does that without being told
anything about the keys:

1. The first page is listed alone. A prefix that fits one page costs one request, as a
   serial listing does.
2. From the keys seen so far it learns an alphabet and the keys' density, and cuts the rest of
   the key space ahead into ranges of about ``range_pages`` pages each (interpolating between
   keys, so cuts fall between the keys it expects, not at fixed characters).
3. Up to ``workers`` ranges are listed at once; each stops at its upper bound, or after
   1.5 ``range_pages`` pages (what is left of it is cut again, shorter ranges first). The
   last range is open-ended, a probe of two pages: as soon as it comes back with more beyond
   it, the space beyond is cut too (4 ranges, then 8, up to ``workers``), so a short prefix
   is not cut into ranges past its end and a long one keeps every worker busy.
4. Entries are yielded range by range, so in key order (UTF-8 byte order, which is code point
   order and how S3 sorts). A range listed ahead of the consumer waits in a temporary file,
   a page at a time, so memory holds the pages in flight (``workers``) and the one being
   read, whatever the prefix holds; entries keep only the fields flows read.

The cuts only decide speed, never what is listed: ranges are ``(after, upto]`` intervals of
strings that together cover everything after the first page, so every key lands in exactly
one, whatever its characters. Costs beyond a serial listing: about half a page per range (a
range's last page is short) and an empty request where a cut lands past the last key.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Any

from tasks.core.errors import s3_errors

__all__ = ["KeySpace", "list_objects"]

#: Keys per page (the API's maximum).
PAGE = 1000
#: Ranges listed at once (``COLDFLOW_LIST_WORKERS`` overrides).
WORKERS = int(os.environ.get("COLDFLOW_LIST_WORKERS", "24"))
#: Pages a range is cut to hold.
RANGE_PAGES = 6
#: What flows read of a listed object; the rest of botocore's entry is dropped.
FIELDS = ("Key", "Size", "ETag", "LastModified", "StorageClass", "RestoreStatus")
#: Positions after the common prefix that interpolation looks at.
DIGITS = 12
#: Characters of the common prefix counted as digits too.
SLACK = 3


@dataclass(frozen=True)
class _Range:
    """Keys k with after < k <= upto (upto None: to the end of the prefix)."""

    after: str
    upto: str | None


@dataclass
class _Listed:
    spool: IO[bytes]  # pickled pages of entries
    count: int
    resume: str | None  # listing stopped early: the rest is (resume, upto]
    pages: int
    sample: list[str] = field(default_factory=list)  # the first, every 50th, the last key

    def pages_of(self) -> Iterator[list[dict]]:
        """The spooled pages, in order; the spool is closed once read."""
        try:
            self.spool.seek(0)
            while True:
                try:
                    yield pickle.load(self.spool)
                except EOFError:
                    return
        finally:
            self.spool.close()


class KeySpace:
    """Maps keys to integers and back, for cutting a key range: each of the first ``DIGITS``
    characters after the keys' common prefix is a digit, its rank in the alphabet seen so far
    (a character not seen counts as the one below it). Order-keeping (never reversing); only
    used to place cuts, so an imperfect map costs speed, never keys."""

    def __init__(self, prefix: str, first: str) -> None:
        self.prefix, self.common = prefix, first
        self.base = first
        self.alphabet: list[str] = []

    def learn(self, keys: list[str]) -> None:
        """Narrow the common prefix and widen the alphabet with a page's keys. The digits
        start a few characters before the common prefix ends: keys counted in a page
        (``x/000000`` to ``x/000999``) go on past it (``x/001000``)."""
        if not keys:
            return
        for key in (keys[0], keys[-1]):
            n = 0
            limit = min(len(self.common), len(key))
            while n < limit and self.common[n] == key[n]:
                n += 1
            self.common = self.common[:n]
        self.base = self.common[: max(len(self.prefix), len(self.common) - SLACK)]
        seen = set(self.alphabet)
        for key in [*keys[:: max(1, len(keys) // 50)], keys[-1]]:
            seen.update(key[len(self.base) : len(self.base) + DIGITS])
        self.alphabet = sorted(seen)

    @property
    def radix(self) -> int:
        return len(self.alphabet) + 1

    def value(self, key: str) -> int:
        """The key as an integer of DIGITS digits in base ``radix``: 0 where the key has
        ended, else the number of alphabet characters up to its character (order kept)."""
        tail = key[len(self.base) :] if key.startswith(self.base) else ""
        v = 0
        for i in range(DIGITS):
            digit = bisect_right(self.alphabet, tail[i]) if i < len(tail) else 0
            v = v * self.radix + digit
        return v

    def key(self, value: int) -> str:
        """A key at ``value``: the common prefix and the characters the digits stand for."""
        digits = []
        for _ in range(DIGITS):
            value, digit = divmod(value, self.radix)
            digits.append(digit)
        chars = []
        for d in reversed(digits):
            if not d:  # the key ends here
                break
            chars.append(self.alphabet[d - 1])
        return self.base + "".join(chars)

    @property
    def top(self) -> int:
        return self.radix**DIGITS


def _list_range(
    client: Any, bucket: str, prefix: str, part: _Range, max_pages: int, extra: dict
) -> _Listed:
    """The entries of one range, at most ``max_pages`` pages of them, spooled to a temporary
    file page by page: a range listed ahead of the consumer waits there, not in memory.
    Entries keep only the fields flows read."""
    spool = tempfile.TemporaryFile(prefix="coldflow-listing-")  # noqa: SIM115 (closed by its reader)
    count, after, pages, last = 0, part.after, 0, ""
    sample: list[str] = []  # every 50th key

    def done(resume: str | None) -> _Listed:
        return _Listed(spool, count, resume, pages, [*sample, last] if count else [])

    try:
        while True:
            kwargs = {"StartAfter": after} if after else {}
            answer = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **kwargs, **extra)
            pages += 1
            contents = answer.get("Contents", [])
            kept = [
                {k: e[k] for k in FIELDS if k in e}
                for e in contents
                if part.upto is None or e["Key"] <= part.upto
            ]
            if kept:
                pickle.dump(kept, spool, protocol=pickle.HIGHEST_PROTOCOL)
                count += len(kept)
                sample.extend(e["Key"] for e in kept[::50])
                last = kept[-1]["Key"]
            if len(kept) < len(contents) or not answer.get("IsTruncated") or not contents:
                return done(None)
            after = contents[-1]["Key"]
            if part.upto is not None and after == part.upto:
                return done(None)
            if pages >= max_pages:
                return done(after)
    except BaseException:
        spool.close()
        raise


@dataclass
class _Slot:
    """A range in the queue, its listing, and whether its ``resume`` was already acted on."""

    part: _Range
    future: Future[_Listed]
    handled: bool = False


class _Density:
    """Keys per unit of a :class:`KeySpace`'s values, from the ranges listed last."""

    def __init__(self) -> None:
        self.recent: deque[tuple[str, str, int]] = deque(maxlen=8)

    def add(self, first: str, last: str, count: int) -> None:
        if count > 1:
            self.recent.append((first, last, count - 1))

    def cuts(self, space: KeySpace, after: str, upto: str | None, sizes: list[int]) -> list[str]:
        """Cut points after ``after`` (and before ``upto``), ranges of ``sizes`` keys each as
        the recent density predicts (the last range is left open); none where it can't."""
        width = sum(space.value(b) - space.value(a) for a, b, _ in self.recent)
        count = sum(c for _, _, c in self.recent)
        if width <= 0 or count <= 0:
            return []
        at = space.value(after)
        end = space.value(upto) if upto is not None else space.top
        found: list[str] = []
        for size in sizes[:-1]:
            at += max(1, width * size // count)
            if at >= end:
                break
            cut = space.key(at)
            if cut <= (found[-1] if found else after) or (upto is not None and cut >= upto):
                continue
            found.append(cut)
        return found


def list_objects(
    client: Any,
    bucket: str,
    prefix: str = "",
    *,
    workers: int | None = None,
    range_pages: int = RANGE_PAGES,
    page_size: int = PAGE,
    on_pages: Callable[[int], None] | None = None,
    **extra: Any,
) -> Iterator[dict]:
    """Every object under ``prefix`` (ListObjectsV2 entries), in key order, listed as several
    key ranges at once once the prefix holds more than a page (``page_size`` keys, S3's
    most by default). ``extra`` goes to every request (e.g. ``RequestPayer``). A consumer
    that stops early stops the listing. ``on_pages(n)`` is told of the requests as their
    entries are yielded (for a flow's request counts)."""
    unsupported = extra.keys() & {"StartAfter", "Delimiter", "ContinuationToken"}
    if unsupported:  # ranges are cut from the whole prefix, and carry no common prefixes
        raise TypeError(f"list_objects lists whole prefixes; {sorted(unsupported)} not taken")
    counted = on_pages or (lambda n: None)
    workers = WORKERS if workers is None else workers
    extra = {**extra, "MaxKeys": page_size}
    with s3_errors(bucket, prefix):
        first = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **extra)
    contents = first.get("Contents", [])
    counted(1)
    yield from contents
    if not first.get("IsTruncated") or not contents:
        return
    if workers <= 1:  # one page after another
        after = contents[-1]["Key"]
        while True:
            with s3_errors(bucket, prefix):
                answer = client.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, StartAfter=after, **extra
                )
            counted(1)
            page = answer.get("Contents", [])
            yield from page
            if not answer.get("IsTruncated") or not page:
                return
            after = page[-1]["Key"]
    space = KeySpace(prefix, contents[0]["Key"])
    space.learn([e["Key"] for e in contents])
    density = _Density()
    density.add(contents[0]["Key"], contents[-1]["Key"], len(contents))
    cap, probe = range_pages + range_pages // 2, max(1, range_pages // 3)
    queue: deque[_Slot] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="list") as pool:

        def submit(parts: list[_Range], front: bool = False) -> None:
            slots = [
                _Slot(p, pool.submit(_list_range, client, bucket, prefix, p, pages, extra))
                for p in parts
                for pages in [probe if p.upto is None else cap]
            ]
            if front:
                queue.extendleft(reversed(slots))
            else:
                queue.extend(slots)

        def cut(after: str, upto: str | None, n: int, ramp: bool = False) -> list[_Range]:
            """``n`` ranges; with ``ramp`` (just after the consumer) the first ones shorter,
            so the range the consumer waits on next is back soon."""
            pages = [min(range_pages, 1 + i) if ramp else range_pages for i in range(n)]
            points = density.cuts(space, after, upto, [p * page_size for p in pages])
            return [_Range(a, b) for a, b in zip([after, *points], [*points, upto], strict=True)]

        burst = [4]  # ranges cut ahead at once, doubled as the prefix proves longer

        def room() -> int:
            return max(1, workers - len(queue))

        def ahead() -> int:
            n = min(burst[0], room())
            burst[0] = min(workers, 2 * burst[0])
            return n

        def learn(got: _Listed) -> None:
            if got.sample:
                space.learn(got.sample)
                density.add(got.sample[0], got.sample[-1], got.count)

        def extend(slot: _Slot) -> None:
            """The open range came back with more beyond it: cut that now, not when the
            consumer reaches it, so the ranges ahead never run dry. A range that failed is
            left for the consumer, who raises its error on reaching it."""
            slot.handled = True
            if slot.future.exception() is not None:
                return
            got = slot.future.result()
            learn(got)
            if got.resume is not None:
                slot.part = _Range(slot.part.after, got.resume)
                submit(cut(got.resume, None, ahead()))

        submit(cut(contents[-1]["Key"], None, ahead(), ramp=True))
        try:
            while queue:
                front = queue[0]
                while not front.future.done():
                    tail = queue[-1]
                    if tail is front or tail.handled or tail.part.upto is not None:
                        wait([front.future])
                        continue
                    wait([front.future, tail.future], return_when=FIRST_COMPLETED)
                    if tail.future.done():
                        extend(tail)
                queue.popleft()
                with s3_errors(bucket, prefix):
                    got = front.future.result()
                counted(got.pages)
                for page in got.pages_of():
                    yield from page
                if front.handled:
                    continue
                learn(got)
                if got.resume is not None:  # more than predicted: cut the rest again
                    n = room() if front.part.upto is not None else ahead()
                    submit(cut(got.resume, front.part.upto, n, ramp=True), front=True)
        finally:
            for slot in queue:
                slot.future.cancel()
            for slot in queue:  # spools of ranges listed but never read
                if not slot.future.cancelled() and slot.future.exception() is None:
                    slot.future.result().spool.close()
