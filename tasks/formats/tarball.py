"""Writing and reading plate tarballs that GNU tar reads, as streams.

Members are regular files only (GNU tar creates the directories on
extraction), named ``{tag}/{key without the source root}``, owned by 0:0,
mode 0644, timestamped with the object's LastModified. Both directions work on
streams, so the same code serves a staged tarball on scratch and one that goes
straight into a multipart upload.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from tasks.formats.compression import compressed_writer, decompressed_reader

#: tar's own format of the established archives (GNU tar's default).
TAR_FORMAT = tarfile.GNU_FORMAT
_COPY_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class MemberSource:
    """A tar member to write: its path in the archive, size, mtime, and how to open its bytes."""

    name: str
    size: int
    mtime: int
    open: Callable[[], AbstractContextManager[BinaryIO]]


def epoch(modified: str) -> int:
    """Seconds since the epoch of a ``YYYY-MM-DD HH:MM:SS`` UTC time."""
    return int(datetime.strptime(modified, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def tarinfo_for(member: MemberSource) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.size = member.size
    info.mtime = member.mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tarball(
    members: Iterable[MemberSource],
    target: BinaryIO,
    compression: str,
    level: int | None = None,
    threads: int | None = None,
) -> int:
    """Write a compressed tarball of ``members`` into ``target``; returns the member count.

    A source that yields fewer bytes than its listed size fails the write
    (tarfile checks), so a tarball never silently holds a truncated object.
    """
    count = 0
    with (
        compressed_writer(target, compression, level, threads) as packed,
        tarfile.open(
            fileobj=packed,
            mode="w|",
            format=TAR_FORMAT,
            encoding="utf-8",
            bufsize=_COPY_BUFFER,
        ) as tar,
    ):
        for member in members:
            with member.open() as body:
                tar.addfile(tarinfo_for(member), body)
            count += 1
    return count


def iter_members(source: BinaryIO, compression: str) -> Iterator[tarfile.TarInfo]:
    """Every member header of a compressed tarball read as a stream (data skipped)."""
    with (
        decompressed_reader(source, compression) as plain,
        tarfile.open(
            fileobj=plain,
            mode="r|",
            encoding="utf-8",
            bufsize=_COPY_BUFFER,
        ) as tar,
    ):
        yield from tar


def tar_listing_lines(source: BinaryIO, compression: str, tag: str) -> Iterator[str]:
    """``_file_listing_tar.txt`` lines of one tarball, in archive order.

    Regular files only; a member outside ``{tag}/`` yields a line that keeps
    its full path, so the listing comparison fails and names it.
    """
    head = f"{tag}/"
    for info in iter_members(source, compression):
        if not info.isreg():
            continue
        name = info.name[len(head) :] if info.name.startswith(head) else info.name
        yield f"{name}\t{info.size}\n"
