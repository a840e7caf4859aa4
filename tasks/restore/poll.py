"""Looking at pending restores: by listing with ``RestoreStatus`` (1,000 keys a request) or a
HEAD per key, whichever costs fewer requests; the check the generic sensor calls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.concurrency import bounded_map
from tasks.core.errors import error_code, is_missing
from tasks.core.listing import list_objects
from tasks.core.sensor import Look
from tasks.core.status import ObjectStatus
from tasks.formats.ledger import escape_key, unescape_key
from tasks.formats.listing import sort_file
from tasks.restore.inventory import classify_head

IN_PROGRESS = ObjectStatus.IN_PROGRESS
RESTORED = ObjectStatus.RESTORED
NOT_ARCHIVED = ObjectStatus.NOT_ARCHIVED
ERROR = ObjectStatus.ERROR


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
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
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
    workers: int = 64,
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

                def count(pages: int) -> None:
                    poll.requests += pages

                for obj in list_objects(
                    client,
                    bucket,
                    prefix,
                    on_pages=count,
                    OptionalObjectAttributes=["RestoreStatus"],
                ):
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


class PendingRestores:
    """The restores a sensor waits for: a sorted file of keys, re-checked by :meth:`look`.

    Each look lists the prefix when that costs fewer requests than a HEAD per pending key
    and the endpoint reports ``RestoreStatus``; otherwise it HEADs the pending keys.
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str, pending: Path, listed: int, workers: int = 64
    ) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.path, self.listed, self.workers = pending, listed, workers
        self.use_listing = True
        self.looks = 0
        with open(pending, encoding="utf-8") as f:
            self.count = sum(1 for _ in f)

    def look(self) -> Look:
        """Check every pending key once; keep only those still in progress."""
        list_cost = self.listed // 1000 + 1
        out = self.path.with_suffix(f".{self.looks % 2}.txt")
        poll = poll_pending(
            self.client,
            self.bucket,
            self.prefix,
            self.path,
            out,
            self.use_listing and list_cost < self.count,
            self.workers,
        )
        self.use_listing = self.use_listing and poll.listing_supported
        self.looks += 1
        self.count = poll.pending
        out.replace(self.path)
        return Look(
            finished={ObjectStatus.READY: poll.ready, ERROR: poll.n_errors},
            pending=poll.pending,
            requests=poll.requests,
            problems=poll.errors,
        )
