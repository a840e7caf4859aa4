"""Whether an object in S3 is the bytes a flow wrote: S3's checksum first, the ETag second.

S3's ETag is an MD5 digest only for plaintext and SSE-S3 objects (AWS's *Object* reference:
SSE-C, SSE-KMS and DSSE-KMS objects get one that is not); its checksums hold under every kind
of encryption. Every upload coldflow verifies carries a full-object CRC64NVME computed while
its bytes were produced, which S3 checks on arrival and stores; this compares what S3 stores
with it and, where the ETag is an MD5, the ETag too.
"""

from __future__ import annotations

from typing import Any

from tasks.core.errors import ArchiveVerificationError
from tasks.core.s3 import etag_is_md5, full_object_crc64nvme, head_checked, strip_etag

__all__ = ["check_stored"]


def check_stored(
    client: Any, bucket: str, key: str, *, size: int, crc64nvme: str, etag: str, note: str = ""
) -> str:
    """Check ``s3://bucket/key`` against what was written; returns S3's ETag (no quotes).

    ``size`` and ``crc64nvme`` (base64, the whole object's) must equal what S3 stores; ``etag``
    (the MD5 or ``md5-of-md5s-N`` computed locally) must equal S3's where that is an MD5
    digest. Raises ArchiveVerificationError otherwise, and where S3 stores no full-object
    checksum and its ETag is not an MD5, since nothing could then tell the bytes apart.
    ``note`` is added to an ETag mismatch's message (the part size, say).
    """
    found = head_checked(client, bucket, key)
    where = f"s3://{bucket}/{key}"
    remote = strip_etag(found["ETag"])
    if int(found["ContentLength"]) != size:
        raise ArchiveVerificationError(
            f"{where}: {int(found['ContentLength']):,} bytes in S3, {size:,} written"
        )
    checksum = full_object_crc64nvme(found)
    if checksum is not None and checksum != crc64nvme:
        raise ArchiveVerificationError(
            f"{where}: S3's CRC64NVME {checksum} differs from the local {crc64nvme}"
        )
    md5_etag = etag_is_md5(found)
    if md5_etag and remote != etag:
        raise ArchiveVerificationError(
            f"{where}: remote ETag {remote} differs from the local {etag}{note}"
        )
    if checksum is None and not md5_etag:
        raise ArchiveVerificationError(
            f"{where}: S3 stores no full-object CRC64NVME for it and its ETag is not an MD5 "
            f"digest ({found.get('ServerSideEncryption') or 'SSE-C'}): it can't be verified"
        )
    return remote
