"""Exceptions named for what went wrong, carrying what a person needs to act."""

from __future__ import annotations

from collections.abc import Sequence


class ColdflowError(Exception):
    """Base class of every error coldflow raises on purpose."""


class InputError(ColdflowError, ValueError):
    """Bad input caught before anything was written."""


class PlatesFileError(InputError):
    """A plates.csv that can't be used as it is."""


class BucketNotFoundError(InputError):
    """A bucket that does not exist or cannot be reached with these credentials."""


class ScratchSpaceError(InputError):
    """Scratch can't hold what a plate needs while staged."""


class UnsupportedKeyError(InputError):
    """An object key the archive layout can't represent (a tab, newline or control character)."""


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


class PlateFailedError(ColdflowError):
    """One plate was not archived; ``row`` is its summary row (what was done, what was kept)."""

    def __init__(self, message: str, row: dict) -> None:
        self.row = row
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.row))


class PlatesFailedError(ColdflowError):
    """Some plates of a run failed or were empty; ``summary`` holds every plate's row."""

    def __init__(self, message: str, summary: list[dict]) -> None:
        self.summary = summary
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.summary))


def sample(keys: Sequence[str], limit: int = 5) -> str:
    """A short, readable list of keys for an error message."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = len(keys) - limit
    return f"{shown} (+{more} more)" if more > 0 else shown
