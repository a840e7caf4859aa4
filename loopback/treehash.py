"""Glacier's SHA-256 tree hashes as the loopback's vaults answer them (botocore's own
implementation for whole archives, independent of coldflow's ``tasks.vault.treehash``)."""

from __future__ import annotations

import hashlib
import io

from botocore.utils import calculate_tree_hash

MIB = 1024 * 1024


def tree_hash(data: bytes) -> str:
    """The archive's tree hash as botocore computes it (independent of coldflow's own)."""
    return calculate_tree_hash(io.BytesIO(data))


def leaves(data: bytes) -> list[bytes]:
    """The SHA-256 of every MiB, as Glacier keeps them to answer range checksums."""
    view = memoryview(data)
    return [hashlib.sha256(view[i : i + MIB]).digest() for i in range(0, len(data), MIB)]


def root(leaves: list[bytes]) -> str:
    """The tree hash over a run of leaves (pairs hashed level by level, odd one up)."""
    level = list(leaves) or [hashlib.sha256(b"").digest()]
    while len(level) > 1:
        level = [
            hashlib.sha256(level[i] + level[i + 1]).digest() if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0].hex()


def aligned(start: int, end: int, size: int) -> bool:
    """Glacier returns a range's checksum only when the range is tree-hash aligned."""
    if start % MIB:
        return False
    if end + 1 == size:
        return True
    mibs, rest = divmod(end + 1 - start, MIB)
    return not rest and mibs & (mibs - 1) == 0 and (start // MIB) % mibs == 0
