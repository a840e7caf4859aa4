"""Every exception coldflow raises on purpose, and the one place botocore errors become them.

Exceptions are named for what went wrong and carry what a person needs to act (keys,
counts, rows). :func:`translate` maps an S3 error answer to one of them (archived,
missing, changed, no such bucket, transient), so no caller compares error codes inline
and no user reads a raw ``InvalidObjectState``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from botocore.exceptions import ClientError


class ColdflowError(Exception):
    """Base class of every error coldflow raises on purpose."""


# -- bad input: caught before anything is written ------------------------------------------


class InputError(ColdflowError, ValueError):
    """Bad input caught before anything was written."""


class VersioningChoiceError(InputError):
    """Deleting from a versioned bucket was asked without saying what deleting means there."""


class PlatesFileError(InputError):
    """A plates.csv that can't be used as it is."""


class BucketNotFoundError(InputError):
    """A bucket that does not exist or cannot be reached with these credentials."""


class ScratchSpaceError(InputError):
    """Scratch can't hold what a plate needs while staged."""


class UnsupportedKeyError(InputError):
    """An object key the archive layout can't represent (a tab, newline or control character)."""


# -- objects: what S3 said about one object ------------------------------------------------


class ObjectArchivedError(ColdflowError):
    """An object can't be read because it sits in an archive tier and is not restored."""

    def __init__(self, bucket: str, key: str, detail: str = "") -> None:
        self.bucket, self.key = bucket, key
        super().__init__(
            f"s3://{bucket}/{key} is archived (not readable until restored): restore it first, "
            "e.g. with restore_prefix / `coldflow restore-prefix`"
            + (f" ({detail})" if detail else "")
        )

    def __reduce__(self):
        return (type(self), (self.bucket, self.key))


class ObjectMissingError(ColdflowError):
    """An object (or bucket) that should be there is not."""


class TransientError(ColdflowError):
    """Throttling, a 5xx or a dropped connection that outlived the retries at its layer."""


class EmptyPlateError(ColdflowError):
    """Every source prefix of a plate is empty."""


class SourceChangedError(ColdflowError):
    """Source objects changed, appeared or vanished after they were listed.

    Nothing is deleted when this is raised.
    """

    def __init__(
        self,
        message: str,
        changed: Sequence[str] = (),
        appeared: Sequence[str] = (),
        vanished: Sequence[str] = (),
    ) -> None:
        self.changed = list(changed)
        self.appeared = list(appeared)
        self.vanished = list(vanished)
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.changed, self.appeared, self.vanished))


class ArchiveVerificationError(ColdflowError):
    """An uploaded archive does not match what was built or listed. Nothing is deleted."""


class MissingArchiveError(ColdflowError):
    """A plate has no complete archive to restore from."""


class UnsafeMemberError(ColdflowError):
    """A tarball holds a member that must not be extracted; nothing of it was uploaded."""


# -- waiting -------------------------------------------------------------------------------


class SensorTimeout(ColdflowError):
    """Items still pending when a sensor's time ran out; ``counts`` by status."""

    def __init__(self, message: str, counts: dict[str, int]) -> None:
        self.counts = counts
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.counts))


class RestoreTimeout(SensorTimeout):
    """S3 restores still in progress when the sensor's time ran out."""


class CostCeilingError(ColdflowError):
    """A restore stopped requesting at its cost ceiling; ``counts`` by status. Nothing was
    requested beyond the ceiling."""

    def __init__(self, message: str, counts: dict[str, int]) -> None:
        self.counts = counts
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.counts))


# -- runs that fail some items -------------------------------------------------------------


class ItemFailedError(ColdflowError):
    """One item (a plate, an archive) was not done; ``row`` is its summary row."""

    def __init__(self, message: str, row: dict) -> None:
        self.row = row
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.row))


class PlateFailedError(ItemFailedError):
    """One plate was not archived or restored; ``row`` says what was done and what was kept."""


class ItemsFailedError(ColdflowError):
    """Some items of a run failed, raised after every item had its turn; ``summary`` holds
    every item's row."""

    def __init__(self, message: str, summary: list[dict]) -> None:
        self.summary = summary
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.summary))


class PlatesFailedError(ItemsFailedError):
    """Some plates of a run failed or were empty."""


class BackupFailedError(ItemsFailedError):
    """Some objects were not backed up, restored or tagged; ``summary`` holds the counts."""


# -- botocore's answers --------------------------------------------------------------------

#: An object in an archive tier that is not restored (GET, copy, tagging on some endpoints).
ARCHIVED_CODES = frozenset({"InvalidObjectState", "ObjectNotInActiveTierError"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
NO_BUCKET_CODES = frozenset({"NoSuchBucket"})


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    """The HTTP status of a ClientError (0 for anything else)."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def is_missing(exc: BaseException) -> bool:
    """A 404 for an object (HEAD answers with no code, only the status)."""
    return error_code(exc) in MISSING_CODES or (
        http_status(exc) == 404 and error_code(exc) not in NO_BUCKET_CODES
    )


def translate(exc: BaseException, bucket: str, key: str = "") -> BaseException:
    """The coldflow error for an S3 error answer about ``s3://bucket/key``.

    Archived, missing, changed-since-listed, no such bucket and transient answers get
    their own exceptions; anything else is returned as it is.
    """
    from tasks.core.retry import is_transient  # the retry policy owns the transient list

    if not isinstance(exc, ClientError):
        return exc
    code = error_code(exc)
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if code in ARCHIVED_CODES:
        return ObjectArchivedError(bucket, key, code)
    if code in NO_BUCKET_CODES:
        return BucketNotFoundError(f"bucket {bucket!r} does not exist")
    if code in CHANGED_CODES or http_status(exc) == 412:
        return SourceChangedError(f"{where} changed after it was listed", changed=[key])
    if is_missing(exc):
        return ObjectMissingError(f"{where} does not exist")
    if is_transient(exc):
        return TransientError(f"{where}: {code or http_status(exc)} (still failing after retries)")
    return exc


@contextmanager
def s3_errors(bucket: str, key: str = "") -> Iterator[None]:
    """Raise S3 error answers inside the block as coldflow errors (see :func:`translate`)."""
    try:
        yield
    except ClientError as exc:
        translated = translate(exc, bucket, key)
        if translated is exc:
            raise
        raise translated from exc


def describe(exc: BaseException) -> str:
    """A one-line reason for a failed item (never credentials: botocore messages carry none)."""
    if isinstance(exc, ColdflowError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def sample(keys: Sequence[str], limit: int = 5) -> str:
    """A short, readable list of keys for an error message."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = len(keys) - limit
    return f"{shown} (+{more} more)" if more > 0 else shown
