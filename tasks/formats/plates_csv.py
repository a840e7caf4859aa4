"""Reading and checking a ``plates.csv`` (``plate_id,plate_id_full``) before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from tasks.core.clients import read_options
from tasks.core.errors import InputError, PlatesFileError, translate
from tasks.core.s3 import split_s3_uri
from tasks.formats.layout import check_name

REQUIRED_COLUMNS = ("plate_id", "plate_id_full")


@dataclass(frozen=True)
class Plate:
    """One row of plates.csv."""

    plate_id: str
    plate_id_full: str


def read_plates(path: str, credentials_block: str | None = None) -> list[Plate]:
    """Read and validate a plates.csv, local or ``s3://``; every problem is named in one error.

    Checked: the file exists and parses, both columns are there, there is at least
    one row, no value is blank, no plate id repeats, and no id holds '/', '..' or a
    control character (they would escape the plate's prefixes).
    """
    import pandas as pd  # here, not at import: flows that read no plates.csv start without it

    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=False,
            encoding="utf-8-sig",  # a spreadsheet's byte-order mark is not part of the header
            **read_options(path, credentials_block),
        )
    except FileNotFoundError as exc:
        raise PlatesFileError(f"{path}: no such file") from exc
    except PermissionError as exc:  # s3fs: archived or forbidden, the S3 answer as the cause
        reason: BaseException = exc
        if isinstance(exc.__cause__, ClientError):
            reason = translate(exc.__cause__, *split_s3_uri(path))
        raise PlatesFileError(f"{path} can't be read: {reason}") from exc
    except pd.errors.EmptyDataError as exc:
        raise PlatesFileError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PlatesFileError(f"{path}: not a readable CSV ({exc})") from exc

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise PlatesFileError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected a header 'plate_id,plate_id_full', found {list(frame.columns)}"
        )
    if frame.empty:
        raise PlatesFileError(f"{path}: no plates listed")

    problems: list[str] = []
    for line, row in zip(range(2, len(frame) + 2), frame.itertuples(index=False), strict=True):
        for column in REQUIRED_COLUMNS:
            try:
                check_name(column, getattr(row, column))
            except InputError as exc:
                problems.append(f"line {line}: {exc}")
    for column in REQUIRED_COLUMNS:
        dupes = frame[column][frame[column].duplicated() & (frame[column] != "")]
        for value in dupes.unique():
            problems.append(f"{column} {value!r} is listed more than once")
    if problems:
        raise PlatesFileError(f"{path}: " + "; ".join(problems))
    return [Plate(r.plate_id, r.plate_id_full) for r in frame.itertuples(index=False)]
