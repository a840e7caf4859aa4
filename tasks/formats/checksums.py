"""MD5, S3 (multipart) ETags and the full-object CRC64NVME computed on the fly, as bytes pass by.

The ETag is an MD5 digest only for plaintext and SSE-S3 objects; S3's checksums hold under every
kind of encryption, so a CRC64NVME of the whole object (S3's default algorithm, combined by S3
from the parts of a multipart upload when its type is FULL_OBJECT) is what every upload of a
tarball is checked by (awscrt computes it, as botocore does).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import BinaryIO

from awscrt.checksums import crc64nvme

from tasks.core.s3 import MIB


def crc64nvme_text(value: int) -> str:
    """A running CRC64NVME as S3 shows it (``ChecksumCRC64NVME``: 8 bytes big-endian, base64)."""
    return base64.b64encode(value.to_bytes(8, "big")).decode()


class MultipartHasher:
    """The MD5 of a byte stream and the ETag S3 gives it when uploaded in ``part_size`` parts.

    Uploads through :func:`tasks.s3.upload_path` go multipart exactly when the
    size reaches ``part_size``, so the ETag is the plain MD5 below that and
    ``md5(part md5s)-N`` from there on, as S3 computes it.
    """

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.size = 0
        self._md5 = hashlib.md5()
        self._part = hashlib.md5()
        self._part_fill = 0
        self._part_digests: list[bytes] = []
        self._crc = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._md5.update(view)
        self._crc = crc64nvme(view, self._crc)
        self.size += len(view)
        while view:
            room = self.part_size - self._part_fill
            chunk, view = view[:room], view[room:]
            self._part.update(chunk)
            self._part_fill += len(chunk)
            if self._part_fill == self.part_size:
                self._part_digests.append(self._part.digest())
                self._part = hashlib.md5()
                self._part_fill = 0

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def crc64nvme(self) -> str:
        """The full-object CRC64NVME as S3 shows it (``ChecksumCRC64NVME``, base64)."""
        return crc64nvme_text(self._crc)

    @property
    def etag(self) -> str:
        if self.size < self.part_size:
            return self.md5
        digests = list(self._part_digests)
        if self._part_fill:
            digests.append(self._part.digest())
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


class HashingWriter:
    """A write-only file object that hashes everything written before passing it on."""

    def __init__(self, target: BinaryIO, part_size: int) -> None:
        self.target = target
        self.hasher = MultipartHasher(part_size)

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.hasher.size

    @property
    def closed(self) -> bool:
        return False


def hash_file(path: Path, part_size: int) -> MultipartHasher:
    """Hash a local file: its MD5 and the ETag it gets when uploaded in ``part_size`` parts."""
    hasher = MultipartHasher(part_size)
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            hasher.update(block)
    return hasher
