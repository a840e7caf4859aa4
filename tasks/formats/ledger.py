"""Ledgers and pending lists: per-object records that stay on disk, never whole in memory.

A ledger is a CSV (key, storage_class, size, status, message), one row per object, written
in chunks and read back in chunks (local or ``s3://``). A pending list is a file of keys,
one per line (escaped), that a sensor re-checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.clients import read_options
from tasks.core.errors import InputError
from tasks.core.status import ObjectStatus
from tasks.formats.listing import sort_file

# pandas is imported where it is used: flows that write no ledger start without it
if TYPE_CHECKING:
    import pandas as pd

LEDGER_COLUMNS = ["key", "storage_class", "size", "status", "message"]


class LedgerWriter:
    """Appends ledger rows (key, storage_class, size, status, message) to a CSV in chunks."""

    def __init__(self, path: Path, chunk: int = 5000) -> None:
        self.path, self.chunk = path, chunk
        self.rows: list[list] = []
        self.written = 0
        import pandas as pd

        pd.DataFrame(columns=LEDGER_COLUMNS).to_csv(path, index=False)

    def add(self, c: Any, status: str, message: str = "") -> None:
        """Record one object (anything with ``key``, ``storage_class`` and ``size``)."""
        self.rows.append([c.key, c.storage_class, c.size, str(status), message])
        if len(self.rows) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        import pandas as pd

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


def read_ledger(
    path: str, credentials_block: str | None = None, chunk: int = 50_000
) -> Iterator[pd.DataFrame]:
    """A ledger (local or s3://) in chunks; keys and messages stay strings."""
    import pandas as pd

    yield from pd.read_csv(
        path,
        dtype={"key": str, "storage_class": str, "message": str},
        keep_default_na=False,
        chunksize=chunk,
        **read_options(path, credentials_block),
    )


def ledger_problem(frame: pd.DataFrame) -> str | None:
    """Why ``frame`` (a chunk of a CSV) is not part of a coldflow restore ledger, or None."""
    import pandas as pd

    if list(frame.columns) != LEDGER_COLUMNS:
        return (
            f"its columns are {','.join(map(str, frame.columns))}, not {','.join(LEDGER_COLUMNS)}"
        )
    unknown = set(frame["status"]) - {s.value for s in ObjectStatus}
    if unknown:
        return f"it has statuses coldflow never writes: {', '.join(sorted(map(str, unknown))[:5])}"
    if pd.to_numeric(frame["size"], errors="coerce").isna().any():
        return "some of its sizes are not numbers"
    return None


def check_ledger(path: str, credentials_block: str | None = None) -> None:
    """Refuse, before anything is requested, a file that is not a coldflow restore ledger
    (its first rows are read; every later chunk is checked as it is used)."""
    try:
        first = next(read_ledger(path, credentials_block, chunk=1000), None)
    except FileNotFoundError as exc:
        raise InputError(f"retry ledger {path} does not exist") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise InputError(f"retry ledger {path} is not a CSV coldflow can read: {exc}") from exc
    if first is None:
        raise InputError(f"retry ledger {path} is empty")
    problem = ledger_problem(first)
    if problem:
        raise InputError(f"retry ledger {path} is not a coldflow restore ledger: {problem}")


def merge_ledgers(parts: Iterable[Path], out: Path) -> Counter:
    """Concatenate ledger parts into one ledger; returns counts by status."""
    import pandas as pd

    counts: Counter = Counter()
    pd.DataFrame(columns=LEDGER_COLUMNS).to_csv(out, index=False)
    for part in parts:
        for frame in read_ledger(str(part)):
            counts.update(frame["status"].value_counts().to_dict())
            frame.to_csv(out, mode="a", header=False, index=False)
    return counts


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
