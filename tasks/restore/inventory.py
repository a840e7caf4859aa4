"""What a prefix holds: list, filter and classify every object, and cut request batches.

Everything works on files in a work folder, a batch at a time, so a prefix of a million
objects never sits in memory: the inventory writes batch files of keys to request, a ledger
part for everything else and a pending list of restores already under way.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.concurrency import bounded_map
from tasks.core.errors import InputError, error_code
from tasks.core.listing import PAGE, list_objects
from tasks.core.status import PENDING, ObjectStatus
from tasks.formats.ledger import LedgerWriter, escape_key, ledger_problem, read_ledger
from tasks.restore.pricing import IT_ARCHIVE_TIERS, NEEDS_DAYS

NOT_ARCHIVED = ObjectStatus.NOT_ARCHIVED
RESTORED = ObjectStatus.RESTORED
IN_PROGRESS = ObjectStatus.IN_PROGRESS
ARCHIVED = ObjectStatus.ARCHIVED
ERROR = ObjectStatus.ERROR
#: Batch size doubles after this many batches, so a million keys make ~550 task runs, not 1,000.
BATCHES_BEFORE_DOUBLING = 200


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


@dataclass(frozen=True)
class RequestBatch:
    """Objects to request together, numbered in listing order (one task run each)."""

    number: int
    objects: list[Candidate]

    @property
    def classes(self) -> tuple[Counter, Counter]:
        """Objects and bytes by archive class (what the batch will cost)."""
        objects: Counter = Counter()
        nbytes: Counter = Counter()
        for c in self.objects:
            objects[c.archive_class] += 1
            nbytes[c.archive_class] += c.size
        return objects, nbytes


def spooled_batches(inv: Inventory) -> Iterator[RequestBatch]:
    """The batches an estimate-first inventory spooled to files, read back one at a time."""
    for number, path in enumerate(inv.batches):
        yield RequestBatch(number, list(read_candidates(Path(path))))


@dataclass
class Inventory:
    """What a prefix holds, by status; batch files of objects that need a request."""

    listed: int = 0
    counts: Counter = field(default_factory=Counter)
    to_request: Counter = field(default_factory=Counter)  # by archive class
    to_request_bytes: Counter = field(default_factory=Counter)
    batches: list[str] = field(default_factory=list)
    heads: int = 0


def _head_classify(
    client: Any, bucket: str, items: list[Candidate], workers: int
) -> Iterator[tuple[Candidate, str, str]]:
    """(candidate with archive class, status, message) by HEAD, ``workers`` at a time."""

    def one(c: Candidate) -> tuple[Candidate, str, str]:
        try:
            head = client.head_object(Bucket=bucket, Key=c.key)
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


class Router:
    """Sends classified objects to request batches, the pending list or the ledger.

    Batches of objects to request are spooled to files in the work folder as they fill
    (``inventory.batches``) or, with ``queue``, kept for :meth:`take`."""

    def __init__(
        self, workdir: Path, batch_size: int, inventory: Inventory, queue: bool = False
    ) -> None:
        self.workdir, self.batch_size, self.inv = workdir, batch_size, inventory
        self.queue = queue
        self.ledger = LedgerWriter(workdir / "ledger-inventory.csv")
        self.pending = open(workdir / "pending-inventory.txt", "w", encoding="utf-8")  # noqa: SIM115
        self.batch: list[Candidate] = []
        self.ready: list[RequestBatch] = []
        self.cut = 0

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
            batch = RequestBatch(self.cut, self.batch)
            if self.queue:
                self.ready.append(batch)
            else:
                spool(self.inv, self.workdir, batch)
            self.batch = []
            self.cut += 1
            if self.cut % BATCHES_BEFORE_DOUBLING == 0:
                self.batch_size *= 2  # keeps task runs in the hundreds for millions of keys

    def take(self) -> list[RequestBatch]:
        """The batches filled since the last call."""
        ready, self.ready = self.ready, []
        return ready

    def close(self) -> None:
        self._cut()
        self.ledger.flush()
        self.pending.close()


def listed_batches(
    inv: Inventory,
    client: Any,
    bucket: str,
    prefix: str,
    workdir: Path,
    filter_in: list[str] | None = None,
    filter_out: list[str] | None = None,
    batch_size: int = 1000,
    head_workers: int = 64,
    keep_key: Callable[[str], bool] | None = None,
) -> Iterator[RequestBatch]:
    """List a prefix (with ``RestoreStatus`` where the endpoint gives it), filter and classify
    every object into ``inv``, and yield batches of objects to request as soon as each fills,
    so requests can start with the first pages. HEADs only Intelligent-Tiering objects the
    listing can't classify. ``keep_key``, if given, is asked about every key in listing order.
    ``inv`` is complete once the generator is exhausted."""
    workdir.mkdir(parents=True, exist_ok=True)
    router = Router(workdir, batch_size, inv, queue=True)
    unknown: list[Candidate] = []

    def resolve() -> None:
        inv.heads += len(unknown)
        for c, status, message in _head_classify(client, bucket, unknown, head_workers):
            router.route(c, status, message)
        unknown.clear()

    try:
        for obj in list_objects(client, bucket, prefix, OptionalObjectAttributes=["RestoreStatus"]):
            inv.listed += 1
            if inv.listed % PAGE == 0:  # finished batches go on as the listing goes on
                yield from router.take()
            if obj["Key"].endswith("/") and obj["Size"] == 0:
                continue
            if not keep(obj["Key"], filter_in, filter_out):
                continue
            if keep_key is not None and not keep_key(obj["Key"]):
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
    yield from router.take()


def take_inventory(
    client: Any,
    bucket: str,
    prefix: str,
    workdir: Path,
    filter_in: list[str] | None = None,
    filter_out: list[str] | None = None,
    batch_size: int = 1000,
    head_workers: int = 64,
    keep_key: Callable[[str], bool] | None = None,
) -> Inventory:
    """The whole inventory first, request batches spooled to files (estimate-first path)."""
    inv = Inventory()
    for batch in listed_batches(
        inv,
        client,
        bucket,
        prefix,
        workdir,
        filter_in,
        filter_out,
        batch_size,
        head_workers,
        keep_key,
    ):
        spool(inv, workdir, batch)
    return inv


def spool(inv: Inventory, workdir: Path, batch: RequestBatch) -> None:
    """One batch to a file in the work folder, recorded in ``inv.batches``."""
    path = workdir / f"batch-{len(inv.batches):05d}.csv"
    write_candidates(path, batch.objects)
    inv.batches.append(str(path))


def inventory_from_ledger(
    client: Any,
    bucket: str,
    ledger: str,
    workdir: Path,
    batch_size: int = 1000,
    credentials_block: str | None = None,
    head_workers: int = 64,
) -> Inventory:
    """Retry a previous run: its error rows are classified afresh (HEAD), every other row is
    carried over to the new ledger as it was."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory()
    router = Router(workdir, batch_size, inv)
    try:
        for frame in read_ledger(ledger, credentials_block):
            problem = ledger_problem(frame)
            if problem:
                raise InputError(
                    f"retry ledger {ledger} is not a coldflow restore ledger: {problem}"
                )
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
    head_workers: int = 64,
) -> Inventory:
    """Classify a known set of keys (a plate's tarballs and sidecars) by HEAD."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory(listed=len(keys), heads=len(keys))
    router = Router(workdir, batch_size, inv)
    try:
        found = [Candidate(k, 0, "") for k in keys]
        for c, status, message in _head_classify(client, bucket, found, head_workers):
            router.route(c, status, message)
    finally:
        router.close()
    return inv
