"""List a prefix as several key ranges at once, in key order.

S3 returns 1,000 keys a request, one page after another: a prefix of 1,000,000 keys is 1,000
round trips in a row. ``ListObjectsV2`` takes ``StartAfter``, so the key space can be cut
into ranges listed at the same time. :func:`list_objects` does that without being told
anything about the keys, one page request at a time, so that no worker idles while work is
left anywhere:

1. The first page is listed alone. A prefix that fits one page costs one request, as a
   serial listing does.
2. Each range lists one page after another. A worker that would idle takes half of the range
   with the most keys left (as the keys' density predicts, :mod:`tasks.core.keyspace`): a cut
   a whole number of pages past where that range stands, less a margin, so the range it is
   taken from still ends on a full page and a cut costs about no request. Where the keys
   between two cuts vary in number (hashed names: by about their square root), each cut
   still costs its margin, and only ranges of ``NOISY_PAGES`` pages or more are cut.
3. Past the last key seen, where the prefix may end, ranges start as *probes*: at most three
   at once, each twice as far as everything confirmed so far (so the known length grows
   fourfold a round trip or more). A probe that comes back empty marks the end; the range
   before it is then halved by probes until what is left is short. Empty probes are the
   listing's only wasted requests: a few per prefix, whatever its size.
4. Entries are yielded range by range, so in key order (UTF-8 byte order, which is code point
   order and how S3 sorts). Pages listed ahead of the consumer wait in a temporary file per
   range, so memory holds the pages in flight and the one being read; at most ``4 × workers``
   pages wait on disk. Entries keep only the fields flows read.

Cuts only decide speed, never what is listed: ranges are ``(after, upto]`` intervals of
strings that together cover everything after the first page, so every key lands in exactly
one, whatever its characters.
"""

from __future__ import annotations

import math
import os
import pickle
import statistics
import tempfile
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any

from tasks.core.errors import s3_errors
from tasks.core.keyspace import Density, KeySpace

__all__ = ["KeySpace", "list_objects"]

#: Keys per page (the API's maximum).
PAGE = 1000
#: Pages requested at once (``COLDFLOW_LIST_WORKERS`` overrides).
WORKERS = int(os.environ.get("COLDFLOW_LIST_WORKERS", "24"))
#: The fewest pages a range is cut to hold.
RANGE_PAGES = 1
#: What flows read of a listed object; the rest of botocore's entry is dropped.
FIELDS = ("Key", "Size", "ETag", "LastModified", "StorageClass", "RestoreStatus")
#: Probes (ranges past every key seen) out at once.
PROBES = 3
#: The fewest pages a range must have left to be cut where cuts miss by much (see steal).
NOISY_PAGES = 8
#: Cuts whose misses are known before their mean is trusted to narrow the margin.
TRUSTED = 8


@dataclass(eq=False)
class _Range:
    """Keys k with after < k <= upto (upto None: to the end of the prefix), listed up to
    ``position``."""

    after: str
    upto: str | None
    probe: bool = False  # starts past every key seen: may be empty
    position: str = ""
    busy: bool = False  # a page request in flight
    done: bool = False
    error: BaseException | None = None
    requests: int = 0
    count: int = 0  # keys kept
    plan: tuple[int, float] | None = None  # keys kept when cut, keys expected up to the cut
    ready: deque[bytes] = field(default_factory=deque)  # pages in memory (the front's)
    spool: IO[bytes] | None = None  # pages waiting on disk, read from ``read_at``
    spooled: int = 0
    read_at: int = 0

    def __post_init__(self) -> None:
        self.position = self.position or self.after

    def keep(self, page: bytes, front: bool) -> None:
        """A page of entries (pickled) for the consumer: in memory if it reads this range
        next and nothing is spooled before it, else on disk."""
        if front and not self.spooled:
            self.ready.append(page)
            return
        if self.spool is None:
            self.spool = tempfile.TemporaryFile(prefix="coldflow-listing-")  # noqa: SIM115
        self.spool.seek(0, os.SEEK_END)
        self.spool.write(page)
        self.spooled += 1

    def take(self) -> list[dict] | None:
        """The next page for the consumer, or None if none is here yet."""
        if self.spooled:
            assert self.spool is not None
            self.spool.seek(self.read_at)
            page = pickle.load(self.spool)
            self.read_at = self.spool.tell()
            self.spooled -= 1
            return page
        return pickle.loads(self.ready.popleft()) if self.ready else None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


@dataclass
class _Page:
    """A listed page as it waits for the consumer: its entries pickled (a fifth of their
    size as dicts, and pages wait by the dozen for a busy consumer), their keys in order,
    and whether S3 has more."""

    entries: bytes
    keys: list[str]
    truncated: bool

    def upto(self, last: str | None) -> _Page:
        """The page without its keys past ``last`` (a range's end; None: no end)."""
        n = len(self.keys) if last is None else bisect_right(self.keys, last)
        if n == len(self.keys):
            return self
        kept = pickle.loads(self.entries)[:n]
        return _Page(pickle.dumps(kept, pickle.HIGHEST_PROTOCOL), self.keys[:n], False)


def _page(client: Any, bucket: str, prefix: str, after: str, extra: dict) -> _Page:
    """One page after ``after``, with only the fields flows read. Where the range ends is
    decided when the page is back (a range may be cut while its request is out)."""
    kwargs = {"StartAfter": after} if after else {}
    answer = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **kwargs, **extra)
    entries = [{k: e[k] for k in FIELDS if k in e} for e in answer.get("Contents", [])]
    return _Page(
        pickle.dumps(entries, pickle.HIGHEST_PROTOCOL),
        [e["Key"] for e in entries],
        bool(answer.get("IsTruncated")),
    )


class _Plan:
    """The ranges of one listing and where to cut them next (see the module's text)."""

    def __init__(self, first: list[dict], prefix: str, page_size: int, range_pages: int):
        keys = [e["Key"] for e in first]
        self.space = KeySpace(prefix, keys[0])
        self.space.learn(keys)
        self.density = Density(self.space)
        self.density.add_page(keys)
        self.seen = keys[-1]  # the greatest key seen
        self.listed = len(keys)  # keys listed so far
        self.page, self.least = page_size, max(1, range_pages)
        self.ranges: deque[_Range] = deque([_Range(keys[-1], None)])
        self.probes = 0  # probes without their first page yet
        self.ended = False  # a probe found the end, or the open range reached it
        self.misses: deque[float] = deque(maxlen=16)  # cuts' errors (see finished)

    def learn(self, r: _Range, keys: list[str], last: str | None) -> None:
        if r.probe and r.requests == 1:
            self.probes -= 1
            if last is None:
                self.ended = True
        if last is not None and last > self.seen:
            self.seen = last
        self.listed += len(keys)
        if keys:
            self.space.learn([*keys[:: max(1, len(keys) // 50)], keys[-1]])
            self.density.add_page(keys)
        if r.upto is None and last is None:
            self.ended = True

    def finished(self, r: _Range) -> None:
        """``r`` reached its cut: how many keys more than expected it held, in units of the
        square root of the keys expected (the spread of a count of keys drawn at random,
        hashed names, grows so: four times the keys, twice the miss)."""
        if r.plan is not None:
            before, expected = r.plan
            self.misses.append((r.count - before - expected) / math.sqrt(max(1.0, expected)))

    def margin(self, keys: float) -> float:
        """Keys a cut is placed short of whole pages, so the range before it ends on a full
        page, not one more request for a few keys: as many more keys than expected as the
        recent cuts say a range of ``keys`` keys may hold (their misses' mean and two and a
        half times their spread, or the largest miss if more), scaled by the square root of
        ``keys``. Until ``TRUSTED`` cuts are known, no less than the largest miss either way:
        the first few can all fall short by chance. 5 % of the keys before two are known;
        at least a two-hundredth of them and one key, at most a quarter. A margin wider than
        needed costs each cut the keys it leaves out of its last page; one narrower, a
        request for a few keys past a full page."""
        if len(self.misses) < 2:
            return 1 + 0.05 * keys
        seen = self.misses if len(self.misses) >= TRUSTED else [abs(m) for m in self.misses]
        spread = statistics.fmean(self.misses) + 2.5 * statistics.pstdev(self.misses)
        spread = max(spread, max(seen))
        return 1 + max(0.005 * keys, min(0.25 * keys, spread * math.sqrt(keys)))

    def cut(self, r: _Range, keys: float, probe: bool) -> _Range | None:
        """A new range from about ``keys`` keys past where ``r`` stands to ``r``'s end, ``r``
        left with a whole number of pages less the margin. None where the keys' density is
        not known yet (a page of one key, or keys the key space cannot tell apart)."""
        if not math.isfinite(keys):
            return None
        pages = max(1, round(keys / self.page)) * self.page
        cut = self.density.ahead(r.position, pages - self.margin(pages), r.upto)
        if cut is None or (cut <= self.seen and probe):
            return None
        new = _Range(cut, r.upto, probe=probe)
        # the keys expected where the cut landed, which may be short of those asked for: a
        # cut with no end is kept to the first half of what is left of the key space, and
        # every cut is rounded to a key the key space can spell
        expected = self.density.between(r.position, cut)
        r.upto, r.plan = cut, (r.count, expected)
        self.ranges.insert(self.ranges.index(r) + 1, new)
        self.probes += probe
        return new

    def probe(self) -> _Range | None:
        """A range past every key seen, twice as far as what is known: while the end is not
        found, from the open range; after, halving the range the end lies in."""
        if self.probes >= (1 if self.ended else PROBES):
            return None
        tail = self.ranges[-1]
        if not self.ended:
            if tail.upto is not None or tail.done:
                return None
            start = max(self.seen, tail.position)
            room = self.density.between(start, self.space.last)
            if room < 2 * self.least * self.page:
                return None  # the key space ends soon after: no room for a probe to pay
            # keys counted, not the key space's distance from the first key: a few keys far
            # before the rest (a plate's images before its tiles) would make that distance
            # stand for more keys than the prefix holds. No further than halfway to the end
            # of the key space, in whole pages: keys that fill it to its end (hashed names)
            # then end the range on a full page, where a cut halfway would not
            far = min(max(self.listed, self.page), room / 2)
            ahead = self.density.between(tail.position, start)
            return self.cut(tail, max(1, (ahead + far) // self.page) * self.page, probe=True)
        for r in reversed(self.ranges):  # the range the end lies in: halve what is unknown
            if r.done or r.upto is None or r.upto <= self.seen:
                continue
            start = max(self.seen, r.position)
            left = self.density.between(start, r.upto)
            if left < 4 * self.least * self.page:
                return None
            return self.cut(r, self.density.between(r.position, start) + left / 2, probe=True)
        return None

    def steal(self, near: int) -> _Range | None:
        """Half of the range with the most keys left among the ``near`` ranges next to the
        consumer that are known to be full (a key past their end was seen). Where cuts miss
        by more than a hundredth of a page (keys drawn at random: hashed names), each cut
        costs its range a last page short by the margin, so only ranges of ``NOISY_PAGES``
        pages or more are cut."""
        fine = len(self.misses) >= 2 and self.margin(self.page) < 0.01 * self.page + 1
        best, most = None, (1.0 if fine else NOISY_PAGES) * self.least * self.page
        for r in islice(self.ranges, near):
            if r.done or r.upto is None or r.upto > self.seen:
                continue
            left = self.density.between(r.position, r.upto)
            if left >= most:
                best, most = r, left
        return None if best is None else self.cut(best, most / 2, probe=False)


def _listed(pool: ThreadPoolExecutor, work: Callable[[_Range], Any], plan: _Plan, workers: int):
    """Run the plan: keep ``workers`` page requests out, yield each range's pages in order."""
    out: dict[Future, _Range] = {}

    def submit(r: _Range) -> None:
        r.busy = True
        out[pool.submit(work, r)] = r

    def fill() -> None:
        """Requests for the ranges next to the consumer first; past them, and for probes,
        only while fewer than ``4 × workers`` pages wait on disk."""
        room = sum(r.spooled for r in plan.ranges) < 4 * workers
        for i, r in enumerate(plan.ranges):
            if len(out) >= workers or (i >= workers and not room):
                break
            if not (r.busy or r.done or r.error):
                submit(r)
        while len(out) < workers:
            new = (plan.probe() if room else None) or plan.steal(4 * workers if room else workers)
            if new is None:
                return
            submit(new)

    def settle(done: set[Future]) -> None:
        for future in done:
            r = out.pop(future)
            r.busy = False
            r.requests += 1
            if future.exception() is not None:
                r.error = future.exception()
                continue
            page = future.result()
            kept = page.upto(r.upto)
            last = page.keys[-1] if page.keys else None
            more = page.truncated and len(kept.keys) == len(page.keys) > 0 and last != r.upto
            plan.learn(r, kept.keys, last)
            if kept.keys:
                r.keep(kept.entries, r is plan.ranges[0])
                r.position = kept.keys[-1]
                r.count += len(kept.keys)
            r.done = not more
            if r.done and (len(kept.keys) < len(page.keys) or last == r.upto):
                plan.finished(r)

    try:
        while plan.ranges:
            front = plan.ranges[0]
            page = front.take()
            if page is not None:
                yield page
                continue
            if front.error is not None:
                raise front.error
            if front.done:
                front.close()
                plan.ranges.popleft()
                yield front.requests
                continue
            fill()
            done, _ = wait(list(out), return_when=FIRST_COMPLETED)
            settle(done)
    finally:
        for future in out:
            future.cancel()
        for r in plan.ranges:
            r.close()


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
    plan = _Plan(contents, prefix, page_size, range_pages)

    def work(r: _Range) -> _Page:
        return _page(client, bucket, prefix, r.position, extra)

    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="list") as pool,
        s3_errors(bucket, prefix),
    ):
        for item in _listed(pool, work, plan, workers):
            if isinstance(item, int):
                counted(item)
            else:
                yield from item
