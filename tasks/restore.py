"""Restoring archived objects: classify, request in batches, keep a ledger, poll until readable.

Everything works on files in a work folder, a batch at a time, so a prefix of
a million objects never sits in memory: the inventory writes batch files of
keys to request, the batches write ledger parts and pending lists, the sensor
re-checks only what is pending, by listing (``RestoreStatus``, 1,000 keys a
request) or by HEAD, whichever costs fewer requests.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from tasks.concurrency import bounded_map, retry_call
from tasks.errors import ColdflowError
from tasks.listing import sort_file
from tasks.restore_pricing import IT_ARCHIVE_TIERS, NEEDS_DAYS
from tasks.s3 import error_code, http_status, is_transient

NOT_ARCHIVED = "not-archived"  # readable as it is, no restore needed
RESTORED = "restored"  # a restored copy is readable
IN_PROGRESS = "in-progress"  # a restore is under way
ARCHIVED = "archived"  # needs a restore request
REQUESTED = "requested"  # request accepted (202)
READY = "ready"  # seen readable by the sensor
ERROR = "error"
PENDING = (REQUESTED, IN_PROGRESS)
#: Tries per restore request for throttling and 5xx (the restore client has no botocore
#: retries, so that every answer is classified here).
RESTORE_ATTEMPTS = 10
#: Statuses every result reports, zero or not.
REPORTED = (NOT_ARCHIVED, RESTORED, IN_PROGRESS, REQUESTED, ERROR, "fell_back")
LEDGER_COLUMNS = ["key", "storage_class", "size", "status", "message"]
#: Batch size doubles after this many batches, so a million keys make ~550 task runs, not 1,000.
BATCHES_BEFORE_DOUBLING = 200


class RestoreTimeout(ColdflowError):
    """Restores still pending when the sensor's time ran out; ``counts`` by status."""

    def __init__(self, message: str, counts: dict[str, int]) -> None:
        self.counts = counts
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.counts))


@dataclass(frozen=True)
class Candidate:
    """One object to consider: key, size, storage class, and its archive class if archived
    (GLACIER, DEEP_ARCHIVE, ARCHIVE_ACCESS, DEEP_ARCHIVE_ACCESS)."""

    key: str
    size: int
    storage_class: str
    archive_class: str = ""


def keep(key: str, filter_in: list[str] | None, filter_out: list[str] | None) -> bool:
    """The old script's filters: keep keys with ANY filter_in substring, drop any filter_out."""
    if filter_in and not any(s in key for s in filter_in):
        return False
    return not (filter_out and any(s in key for s in filter_out))


def status_from_restore_header(value: str | None) -> str | None:
    """RESTORED / IN_PROGRESS from ``x-amz-restore``, None when there is none."""
    if not value:
        return None
    return IN_PROGRESS if 'ongoing-request="true"' in value else RESTORED


def classify_listed(obj: dict) -> tuple[str, str] | None:
    """(archive class, status) from a listing entry, or None when only a HEAD can tell
    (Intelligent-Tiering: the archive access tier is not in listings)."""
    storage_class = obj.get("StorageClass", "STANDARD")
    restore = obj.get("RestoreStatus")
    if storage_class in NEEDS_DAYS:
        if restore:
            return storage_class, IN_PROGRESS if restore.get("IsRestoreInProgress") else RESTORED
        return storage_class, ARCHIVED
    if storage_class == "INTELLIGENT_TIERING":
        if restore and restore.get("IsRestoreInProgress"):
            return "", IN_PROGRESS
        return None
    return "", NOT_ARCHIVED


def classify_head(head: dict) -> tuple[str, str]:
    """(archive class, status) from a HeadObject response."""
    storage_class = head.get("StorageClass", "STANDARD")
    restore = status_from_restore_header(head.get("Restore"))
    tier = head.get("ArchiveStatus")
    if storage_class in NEEDS_DAYS:
        return storage_class, restore or ARCHIVED
    if tier in IT_ARCHIVE_TIERS:
        return tier, restore if restore == IN_PROGRESS else ARCHIVED
    if restore == IN_PROGRESS:
        return "", IN_PROGRESS
    return "", RESTORED if restore else NOT_ARCHIVED


def restore_request(archive_class: str, tier: str, days: int) -> dict:
    """The RestoreRequest for one object: ``Days`` for GLACIER / DEEP_ARCHIVE only
    (Intelligent-Tiering archive tiers refuse it)."""
    request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
    if archive_class in NEEDS_DAYS:
        request["Days"] = days
    return request


@dataclass
class Outcome:
    status: str
    message: str = ""
    fell_back: bool = False


def request_one(
    client: Any, bucket: str, c: Candidate, tier: str, days: int, fallback: bool = True
) -> Outcome:
    """Request one restore. Never raises for S3's answers: they become the outcome."""

    def send(t: str) -> dict:
        return retry_call(
            lambda: client.restore_object(
                Bucket=bucket, Key=c.key, RestoreRequest=restore_request(c.archive_class, t, days)
            ),
            is_transient,
            attempts=RESTORE_ATTEMPTS,
            first_delay=0.2,
            max_delay=5.0,
        )

    try:
        try:
            response = send(tier)
            fell_back = False
        except ClientError as exc:
            if not (
                fallback
                and tier == "Expedited"
                and error_code(exc) == "GlacierExpeditedRetrievalNotAvailable"
            ):
                raise
            response = send("Standard")
            fell_back = True
    except ClientError as exc:
        code = error_code(exc)
        if code == "RestoreAlreadyInProgress":
            return Outcome(IN_PROGRESS, "restore already in progress")
        return Outcome(ERROR, f"{code or type(exc).__name__}: {exc}")
    except Exception as exc:  # connection errors after retries: record, never abort the run
        return Outcome(ERROR, f"{type(exc).__name__}: {exc}")
    status = RESTORED if response["ResponseMetadata"]["HTTPStatusCode"] == 200 else REQUESTED
    note = "Expedited unavailable, requested Standard" if fell_back else ""
    if status == RESTORED:
        note = "already restored; expiry extended" + (f" ({note})" if note else "")
    return Outcome(status, note, fell_back)


# -- files of the work folder ---------------------------------------------------------------


def write_candidates(path: Path, candidates: Iterable[Candidate]) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for c in candidates:
            w.writerow([c.key, c.size, c.storage_class, c.archive_class])
            n += 1
    return n


def read_candidates(path: Path) -> Iterator[Candidate]:
    with open(path, newline="", encoding="utf-8") as f:
        for key, size, storage_class, archive_class in csv.reader(f):
            yield Candidate(key, int(size), storage_class, archive_class)


class LedgerWriter:
    """Appends ledger rows (key, storage_class, size, status, message) to a CSV in chunks."""

    def __init__(self, path: Path, chunk: int = 5000) -> None:
        self.path, self.chunk = path, chunk
        self.rows: list[list] = []
        self.written = 0
        pd.DataFrame(columns=LEDGER_COLUMNS).to_csv(path, index=False)

    def add(self, c: Candidate, status: str, message: str = "") -> None:
        self.rows.append([c.key, c.storage_class, c.size, status, message])
        if len(self.rows) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            pd.DataFrame(self.rows, columns=LEDGER_COLUMNS).to_csv(
                self.path, mode="a", header=False, index=False
            )
            self.written += len(self.rows)
            self.rows = []


def escape_key(key: str) -> str:
    """A key on one line of a pending file (backslash escapes for \\, newline, CR, tab)."""
    return key.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def unescape_key(line: str) -> str:
    out, chars = [], iter(line)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def read_ledger(path: str, chunk: int = 50_000) -> Iterator[pd.DataFrame]:
    """A ledger (local or s3://) in chunks; keys and messages stay strings."""
    yield from pd.read_csv(
        path,
        dtype={"key": str, "storage_class": str, "message": str},
        keep_default_na=False,
        chunksize=chunk,
    )


def merge_ledgers(parts: Iterable[Path], out: Path) -> Counter:
    """Concatenate ledger parts into one ledger; returns counts by status."""
    counts: Counter = Counter()
    pd.DataFrame(columns=LEDGER_COLUMNS).to_csv(out, index=False)
    for part in parts:
        for frame in read_ledger(str(part)):
            counts.update(frame["status"].value_counts().to_dict())
            frame.to_csv(out, mode="a", header=False, index=False)
    return counts


# -- inventory -----------------------------------------------------------------------------


@dataclass
class Inventory:
    """What a prefix holds, by status; batch files of objects that need a request."""

    listed: int = 0
    counts: Counter = field(default_factory=Counter)
    to_request: Counter = field(default_factory=Counter)  # by archive class
    to_request_bytes: Counter = field(default_factory=Counter)
    batches: list[str] = field(default_factory=list)
    heads: int = 0

    def as_dict(self) -> dict:
        return {
            "listed": self.listed,
            "counts": dict(self.counts),
            "to_request": dict(self.to_request),
            "to_request_bytes": dict(self.to_request_bytes),
            "heads": self.heads,
        }


def _head_classify(
    client: Any, bucket: str, items: list[Candidate], workers: int
) -> Iterator[tuple[Candidate, str, str]]:
    """(candidate with archive class, status, message) by HEAD, ``workers`` at a time."""

    def one(c: Candidate) -> tuple[Candidate, str, str]:
        try:
            head = retry_call(lambda: client.head_object(Bucket=bucket, Key=c.key), is_transient)
        except ClientError as exc:
            return c, ERROR, f"{error_code(exc)}: {exc}"
        archive_class, status = classify_head(head)
        return (
            Candidate(
                c.key,
                int(head.get("ContentLength", c.size)),
                head.get("StorageClass", c.storage_class or "STANDARD"),
                archive_class,
            ),
            status,
            "",
        )

    yield from bounded_map(one, items, workers=workers)


class _Router:
    """Sends classified objects to batch files (to request), pending or the ledger."""

    def __init__(self, workdir: Path, batch_size: int, inventory: Inventory) -> None:
        self.workdir, self.batch_size, self.inv = workdir, batch_size, inventory
        self.ledger = LedgerWriter(workdir / "ledger-inventory.csv")
        self.pending = open(workdir / "pending-inventory.txt", "w", encoding="utf-8")  # noqa: SIM115
        self.batch: list[Candidate] = []

    def route(self, c: Candidate, status: str, message: str = "") -> None:
        self.inv.counts[status] += 1
        if status == ARCHIVED:
            self.inv.to_request[c.archive_class] += 1
            self.inv.to_request_bytes[c.archive_class] += c.size
            self.batch.append(c)
            if len(self.batch) >= self.batch_size:
                self._cut()
            return
        if status in PENDING:
            self.pending.write(escape_key(c.key) + "\n")
        self.ledger.add(c, status, message)

    def _cut(self) -> None:
        if self.batch:
            path = self.workdir / f"batch-{len(self.inv.batches):05d}.csv"
            write_candidates(path, self.batch)
            self.inv.batches.append(str(path))
            self.batch = []
            if len(self.inv.batches) % BATCHES_BEFORE_DOUBLING == 0:
                self.batch_size *= 2  # keeps task runs in the hundreds for millions of keys

    def close(self) -> None:
        self._cut()
        self.ledger.flush()
        self.pending.close()


def take_inventory(
    client: Any,
    bucket: str,
    prefix: str,
    workdir: Path,
    filter_in: list[str] | None = None,
    filter_out: list[str] | None = None,
    batch_size: int = 1000,
    head_workers: int = 16,
) -> Inventory:
    """List a prefix (with ``RestoreStatus`` where the endpoint gives it), filter and classify
    every object; HEAD only Intelligent-Tiering objects the listing can't classify."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory()
    router = _Router(workdir, batch_size, inv)
    unknown: list[Candidate] = []

    def resolve() -> None:
        inv.heads += len(unknown)
        for c, status, message in _head_classify(client, bucket, unknown, head_workers):
            router.route(c, status, message)
        unknown.clear()

    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(
            Bucket=bucket, Prefix=prefix, OptionalObjectAttributes=["RestoreStatus"]
        ):
            for obj in page.get("Contents", ()):
                inv.listed += 1
                if obj["Key"].endswith("/") and obj["Size"] == 0:
                    continue
                if not keep(obj["Key"], filter_in, filter_out):
                    continue
                c = Candidate(obj["Key"], int(obj["Size"]), obj.get("StorageClass", "STANDARD"))
                found = classify_listed(obj)
                if found is None:
                    unknown.append(c)
                    if len(unknown) >= batch_size:
                        resolve()
                    continue
                archive_class, status = found
                router.route(Candidate(c.key, c.size, c.storage_class, archive_class), status)
        resolve()
    finally:
        router.close()
    return inv


def inventory_from_ledger(
    client: Any,
    bucket: str,
    ledger: str,
    workdir: Path,
    batch_size: int = 1000,
    head_workers: int = 16,
) -> Inventory:
    """Retry a previous run: its error rows are classified afresh (HEAD), every other row is
    carried over to the new ledger as it was."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory()
    router = _Router(workdir, batch_size, inv)
    try:
        for frame in read_ledger(ledger):
            errors = frame[frame["status"] == ERROR]
            for row in frame[frame["status"] != ERROR].itertuples(index=False):
                c = Candidate(row.key, int(row.size), row.storage_class)
                inv.counts[row.status] += 1
                if row.status in PENDING:
                    router.pending.write(escape_key(c.key) + "\n")
                router.ledger.add(c, row.status, row.message)
            retry = [
                Candidate(r.key, int(r.size), r.storage_class)
                for r in errors.itertuples(index=False)
            ]
            inv.listed += len(frame)
            inv.heads += len(retry)
            for c, status, message in _head_classify(client, bucket, retry, head_workers):
                router.route(c, status, message)
    finally:
        router.close()
    return inv


def inventory_of_keys(
    client: Any,
    bucket: str,
    keys: list[str],
    workdir: Path,
    batch_size: int = 1000,
    head_workers: int = 16,
) -> Inventory:
    """Classify a known set of keys (a plate's tarballs and sidecars) by HEAD."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory(listed=len(keys), heads=len(keys))
    router = _Router(workdir, batch_size, inv)
    try:
        found = [Candidate(k, 0, "") for k in keys]
        for c, status, message in _head_classify(client, bucket, found, head_workers):
            router.route(c, status, message)
    finally:
        router.close()
    return inv


# -- requests ------------------------------------------------------------------------------


def request_batch(
    client: Any,
    bucket: str,
    batch: Path,
    tier: str,
    days: int,
    workers: int = 16,
    fallback: bool = True,
) -> dict[str, int]:
    """Request restores for one batch file; writes its ledger part and pending list beside it.
    Returns counts by status, plus ``fell_back`` (Expedited requests sent as Standard)."""
    ledger = LedgerWriter(batch.with_suffix(".ledger.csv"))
    counts: Counter = Counter()
    with open(batch.with_suffix(".pending.txt"), "w", encoding="utf-8") as pending:
        results = bounded_map(
            lambda c: (c, request_one(client, bucket, c, tier, days, fallback)),
            read_candidates(batch),
            workers=workers,
        )
        for c, outcome in results:
            counts[outcome.status] += 1
            counts["fell_back"] += outcome.fell_back
            ledger.add(c, outcome.status, outcome.message)
            if outcome.status in PENDING:
                pending.write(escape_key(c.key) + "\n")
    ledger.flush()
    return dict(counts)


def merge_pending(parts: Iterable[Path], out: Path) -> int:
    """Concatenate pending lists into one sorted file; returns how many keys it holds."""
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for part in parts:
            if part.exists():
                with open(part, encoding="utf-8") as p:
                    for line in p:
                        f.write(line)
                        n += 1
    sort_file(out)
    return n


# -- the sensor ----------------------------------------------------------------------------


@dataclass
class Poll:
    """One look at the pending objects."""

    ready: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)
    n_errors: int = 0
    requests: int = 0
    listing_supported: bool = True


def head_pending(
    client: Any, bucket: str, keys: Iterable[str], out, poll: Poll, workers: int
) -> None:
    def one(key: str) -> tuple[str, str, str]:
        try:
            head = retry_call(lambda: client.head_object(Bucket=bucket, Key=key), is_transient)
        except ClientError as exc:
            if http_status(exc) == 404:
                return key, ERROR, "vanished"
            return key, ERROR, f"{error_code(exc)}: {exc}"
        _, status = classify_head(head)
        return key, status, ""

    for key, status, message in bounded_map(one, keys, workers=workers):
        poll.requests += 1
        if status == IN_PROGRESS:
            poll.pending += 1
            out.write(escape_key(key) + "\n")
        elif status in (RESTORED, NOT_ARCHIVED):
            poll.ready += 1
        else:
            poll.n_errors += 1
            if len(poll.errors) < 20:
                poll.errors.append(f"{key}: {message or 'not being restored'}")


def poll_pending(
    client: Any,
    bucket: str,
    prefix: str,
    pending: Path,
    out: Path,
    use_listing: bool,
    workers: int = 16,
) -> Poll:
    """Check every key in ``pending`` once; still-pending keys go to ``out`` (sorted)."""
    poll = Poll(listing_supported=use_listing)
    with open(out, "w", encoding="utf-8") as still:
        if not use_listing:
            with open(pending, encoding="utf-8") as f:
                head_pending(
                    client,
                    bucket,
                    (unescape_key(line.rstrip("\n")) for line in f),
                    still,
                    poll,
                    workers,
                )
        else:
            to_head: list[str] = []
            seen_status = False
            with open(pending, encoding="utf-8") as f:
                wanted = f.readline().rstrip("\n")
                paginator = client.get_paginator("list_objects_v2")
                for page in paginator.paginate(
                    Bucket=bucket, Prefix=prefix, OptionalObjectAttributes=["RestoreStatus"]
                ):
                    poll.requests += 1
                    for obj in page.get("Contents", ()):
                        key = escape_key(obj["Key"])
                        while wanted and wanted < key:
                            to_head.append(unescape_key(wanted))  # not listed where expected
                            wanted = f.readline().rstrip("\n")
                        if not wanted or wanted != key:
                            continue
                        restore = obj.get("RestoreStatus")
                        if restore is None:
                            to_head.append(obj["Key"])
                        else:
                            seen_status = True
                            if restore.get("IsRestoreInProgress"):
                                poll.pending += 1
                                still.write(wanted + "\n")
                            else:
                                poll.ready += 1
                        wanted = f.readline().rstrip("\n")
                while wanted:
                    to_head.append(unescape_key(wanted))
                    wanted = f.readline().rstrip("\n")
            if to_head and not seen_status:
                poll.listing_supported = False
            head_pending(client, bucket, to_head, still, poll, workers)
    sort_file(out)
    return poll


def wait_for_pending(
    client: Any,
    bucket: str,
    prefix: str,
    pending: Path,
    total: int,
    listed: int,
    poll_interval: float,
    max_interval: float,
    timeout: float,
    on_progress: Callable[[int, int, Poll], None] | None = None,
    workers: int = 16,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Poll until nothing is pending, backing off from ``poll_interval`` to ``max_interval``.

    Each poll lists the prefix (1,000 keys a request) when that costs fewer requests than
    a HEAD per pending key and the endpoint reports ``RestoreStatus``; otherwise it HEADs
    the pending keys. Raises RestoreTimeout with counts after ``timeout`` seconds.
    """
    started = clock()
    interval = poll_interval
    use_listing = True
    ready = errors = requests = polls = 0
    with open(pending, encoding="utf-8") as f:
        remaining = sum(1 for _ in f)
    while remaining:
        if clock() - started > timeout:
            raise RestoreTimeout(
                f"{remaining} of {total} restores still in progress after {timeout:.0f} s "
                f"({ready} ready, {errors} errors)",
                {"ready": ready, IN_PROGRESS: remaining, ERROR: errors},
            )
        time.sleep(min(interval, max(0.0, timeout - (clock() - started))))
        interval = min(interval * 2, max_interval)
        list_cost = listed // 1000 + 1
        out = pending.with_suffix(f".{polls % 2}.txt")
        poll = poll_pending(
            client, bucket, prefix, pending, out, use_listing and list_cost < remaining, workers
        )
        use_listing = use_listing and poll.listing_supported
        polls += 1
        requests += poll.requests
        ready += poll.ready
        errors += poll.n_errors
        remaining = poll.pending
        out.replace(pending)
        if on_progress is not None:
            on_progress(ready, total, poll)
    return {"ready": ready, ERROR: errors, "polls": polls, "requests": requests}
