"""The SHA-256 tree hash against AWS's published vectors and botocore's own computation."""

from __future__ import annotations

import hashlib
import io

import pytest
from botocore.utils import calculate_tree_hash

from tasks.vault.treehash import MIB, TreeHasher, aligned, chunk_size_for, combine, tree_hash

VECTORS = {
    1 * MIB: "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360",
    2 * MIB: "560c2c9333c719cb00cfdffee3ba293db17f58743cdd1f7e4055373ae6300afa",
    4 * MIB: "9491cb2ed1d4e7cd53215f4017c23ec4ad21d7050a1e6bb636c4f67e8cddb844",
    4 * MIB + 20: "12f3cbd6101b981cde074039f6f728071da8879d6f632de8afc7cdf00661b08f",
}


@pytest.mark.parametrize("size", sorted(VECTORS))
def test_published_vectors(size):
    assert tree_hash(b"a" * size) == VECTORS[size]


def test_empty_input_is_the_sha256_of_nothing():
    assert tree_hash(b"") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "size", [1, MIB - 1, MIB, MIB + 1, 3 * MIB, 3 * MIB + 1, 5 * MIB - 1, 7 * MIB + 3]
)
def test_sizes_around_chunk_boundaries_match_botocore(size):
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    expected = calculate_tree_hash(io.BytesIO(data))
    assert tree_hash(data) == expected
    pieces = TreeHasher()
    for i in range(0, size, 333_333):  # pieces that straddle MiB boundaries
        pieces.update(data[i : i + 333_333])
    assert pieces.hexdigest() == expected and pieces.size == size


@pytest.mark.parametrize("chunk_mib", [1, 2, 4])
def test_archive_hash_combines_from_aligned_ranges(chunk_mib):
    data = (b"0123456789abcdef" * (MIB // 16)) * 9 + b"tail"  # 9 MiB + 4 bytes
    chunk = chunk_mib * MIB
    ranges = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for i in range(len(ranges)):
        start = i * chunk
        assert aligned(start, min(start + chunk, len(data)) - 1, len(data))
    combined = combine(bytes.fromhex(tree_hash(r)) for r in ranges)
    assert combined.hex() == tree_hash(data)


def test_alignment_rules():
    assert aligned(0, MIB - 1, 10 * MIB)
    assert aligned(2 * MIB, 4 * MIB - 1, 10 * MIB)
    assert not aligned(MIB, 3 * MIB - 1, 10 * MIB)  # 2 MiB must start on a 2 MiB boundary
    assert not aligned(0, 3 * MIB - 1, 10 * MIB)  # 3 MiB is not a power of two
    assert aligned(8 * MIB, 10 * MIB - 1, 10 * MIB)  # to the end
    assert not aligned(5, MIB, 10 * MIB)


def test_chunks_are_powers_of_two_and_fit_10000_parts():
    assert chunk_size_for(1) == 8 * MIB
    assert chunk_size_for(80_000 * MIB) == 8 * MIB
    assert chunk_size_for(80_000 * MIB + 1) == 16 * MIB
    size = 40 * 1024**4  # 40 TiB, Glacier's largest archive
    chunk = chunk_size_for(size)
    assert chunk & (chunk - 1) == 0 and -(-size // chunk) <= 10_000
