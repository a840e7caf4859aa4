"""SHA-256 tree hashes as Glacier defines them, computed as bytes stream past.

AWS's algorithm: the SHA-256 of every 1 MiB chunk (the last may be shorter), then the
SHA-256 of each adjacent pair's concatenation, level by level, an odd one out moving up
unchanged, until one hash is left. The tree hash of an empty input is the SHA-256 of
nothing. A range that starts on a 1 MiB boundary and spans a power-of-two number of MiB
(or runs to the end) is a subtree, so its tree hash is what Glacier returns as the range's
``checksum`` and the archive's tree hash can be combined from those of its ranges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

MIB = 1024 * 1024


def combine(hashes: Iterable[bytes]) -> bytes:
    """The root of a tree over these (binary) hashes, paired level by level."""
    level = list(hashes)
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class TreeHasher:
    """Feed bytes in any pieces; :meth:`digest` is their tree hash. Holds one MiB at most."""

    def __init__(self) -> None:
        self._leaves: list[bytes] = []
        self._current = hashlib.sha256()
        self._fill = 0
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.size += len(view)
        while view:
            take = min(MIB - self._fill, len(view))
            self._current.update(view[:take])
            self._fill += take
            view = view[take:]
            if self._fill == MIB:
                self._leaves.append(self._current.digest())
                self._current, self._fill = hashlib.sha256(), 0

    def digest(self) -> bytes:
        leaves = self._leaves + ([self._current.digest()] if self._fill else [])
        return combine(leaves)

    def hexdigest(self) -> str:
        return self.digest().hex()


def tree_hash(data: bytes | memoryview) -> str:
    """The hex tree hash of ``data``."""
    hasher = TreeHasher()
    hasher.update(data)
    return hasher.hexdigest()


def chunk_size_for(size: int, smallest: int = 8 * MIB, max_parts: int = 10_000) -> int:
    """A power-of-two MiB chunk (at least ``smallest``) that splits ``size`` bytes into at
    most ``max_parts`` chunks: each chunk is one tree-hash-aligned range and one S3 part."""
    chunk = MIB
    while chunk < smallest:
        chunk *= 2
    while size > chunk * max_parts:
        chunk *= 2
    return chunk


def aligned(start: int, end: int, size: int) -> bool:
    """Whether the inclusive range ``start``-``end`` of a ``size``-byte archive is
    tree-hash aligned (Glacier returns a checksum for it)."""
    if start % MIB:
        return False
    if end + 1 == size:
        return True
    length = end + 1 - start
    if length % MIB:
        return False
    mibs = length // MIB
    return mibs & (mibs - 1) == 0 and (start // MIB) % mibs == 0
