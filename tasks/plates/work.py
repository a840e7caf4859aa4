"""One plate's job, shared by the archive and restore flows: settings, resolved keys, scratch."""

from __future__ import annotations

import errno
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.core.clients import s3_client
from tasks.core.errors import ScratchSpaceError
from tasks.core.s3 import MIB
from tasks.formats.layout import CELLPAINTING, Layout, PlateLayout
from tasks.formats.plates_csv import Plate

#: What deleting an archived source means on a versioned live bucket (see tasks.archive.delete).
VersionedDelete = Literal["delete-marker", "purge"]


@dataclass(frozen=True)
class PlateSettings:
    """Everything a plate's archive or restore steps need besides the plate (small and
    picklable, so plates run on any worker)."""

    project_name: str
    batch_id: str
    bucket: str
    cold_bucket: str
    scratch_dir: str
    storage_class: str = "DEEP_ARCHIVE"
    delete_source: bool = False
    keep_scratch: bool = False
    compression: str = "gzip"
    compression_level: int | None = None
    compression_threads: int | None = None
    transfer_concurrency: int = 16
    part_size_mib: int = 8
    streaming: bool = False
    conditional_delete: bool = True
    # the live bucket's versioning ("Enabled", "Suspended", None) and what deleting means there
    bucket_versioning: str | None = None
    versioned_delete: VersionedDelete | None = None
    #: The live bucket's Object Lock as its facts say ("off", "on", "on (COMPLIANCE 30 days)").
    object_lock: str = "off"
    credentials_block: str | None = None
    layout: Layout = field(default_factory=lambda: CELLPAINTING)
    progress_key: str | None = None  # the run's progress tracker (tasks/archive/progress.py)

    @property
    def client(self) -> Any:
        return s3_client(self.credentials_block)


@dataclass(frozen=True)
class PlateWork:
    """One plate's archive job: settings, resolved keys, and its scratch folder."""

    settings: PlateSettings
    plate: Plate
    where: PlateLayout

    @classmethod
    def create(cls, settings: PlateSettings, plate: Plate) -> PlateWork:
        where = settings.layout.for_plate(
            settings.project_name, settings.batch_id, plate.plate_id, plate.plate_id_full
        )
        return cls(settings, plate, where)

    @property
    def tag(self) -> str:
        return self.where.tag

    @property
    def workdir(self) -> Path:
        return Path(self.settings.scratch_dir) / self.tag

    def path(self, name: str) -> Path:
        return self.workdir / name

    def entries(self, bundle: str) -> Path:
        return self.path(f"entries_{bundle}.tsv")


_reserved: dict[str, int] = {}
_reserved_lock = threading.Lock()


def reserve_scratch(work: PlateWork, need: int, what: str) -> int:
    """Check scratch can hold ``need`` bytes for the plate (counting plates already running
    in this process) and reserve them; raises ScratchSpaceError, with the numbers, when it
    can't. ``what`` says what the plate holds, for the message."""
    scratch = Path(work.settings.scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    with _reserved_lock:
        free = shutil.disk_usage(scratch).free
        others = sum(v for k, v in _reserved.items() if k != work.tag)
        if need > free - others:
            raise ScratchSpaceError(
                f"{work.tag}: scratch {scratch} has {free / MIB:,.0f} MiB free"
                + (f" ({others / MIB:,.0f} MiB promised to other plates)" if others else "")
                + f"; the plate needs {need / MIB:,.0f} MiB while staged ({what}). "
                "Use a larger scratch_dir or fewer plates in parallel."
            )
        _reserved[work.tag] = need
    return need


#: A disk that filled up (a quota counts too).
_FULL = (errno.ENOSPC, errno.EDQUOT)


def scratch_full(work: PlateWork, exc: BaseException) -> ScratchSpaceError | None:
    """The message for a scratch disk that filled up while the plate was on it, or None when
    ``exc`` (or what caused it) is something else: the reservation counts only coldflow's
    plates, so another writer on the same disk can still fill it mid-plate."""
    seen: BaseException | None = exc
    while seen is not None and not (isinstance(seen, OSError) and seen.errno in _FULL):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    scratch = Path(work.settings.scratch_dir)
    try:
        free = f"{shutil.disk_usage(scratch).free / MIB:,.0f} MiB free now"
    except OSError:
        free = "its free space unknown"
    return ScratchSpaceError(
        f"{work.tag}: scratch {scratch} filled up while the plate was on it ({seen.strerror}; "
        f"{free}); its scratch folder is removed. Free space or use a larger scratch_dir, "
        "then run again."
    )


def release_scratch(work: PlateWork) -> None:
    with _reserved_lock:
        _reserved.pop(work.tag, None)


def clean_scratch(work: PlateWork) -> None:
    release_scratch(work)
    if not work.settings.keep_scratch:
        shutil.rmtree(work.workdir, ignore_errors=True)
