"""Streaming a retrieval job's output into S3, verified chunk by chunk, in bounded memory.

The output is read in power-of-two MiB ranges aligned to the tree hash; each range is
checked against the ``checksum`` Glacier returns for it and becomes one part of a
multipart upload (so at most 10,000 parts). The range hashes combine into the archive's
tree hash, which must equal the job's ``ArchiveSHA256TreeHash`` before the upload is
completed: an archive whose bytes don't check out never appears in S3. The parts' CRC64NVMEs
combine into the whole object's, sent with the upload (S3 checks it) and compared with what S3
stores afterwards, the ETag too where it is an MD5 (:mod:`tasks.core.integrity`): a copy is
verified the same way in an SSE-KMS bucket. The tree hash and
archive id are stored on the S3 object (metadata), so a re-run can prove a copy without
reading it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from awscrt.checksums import combine_crc64nvme, crc64nvme
from botocore.exceptions import ClientError

from tasks.core.concurrency import bounded_map
from tasks.core.errors import ArchiveVerificationError, ColdflowError, error_code, s3_errors
from tasks.core.integrity import check_stored
from tasks.core.retry import retry_stream
from tasks.core.s3 import abort_incomplete_uploads, head
from tasks.formats.checksums import crc64nvme_text
from tasks.vault.jobs import EXPIRED_CODES
from tasks.vault.treehash import chunk_size_for, combine, tree_hash

#: Chunks read and uploaded at once per archive: memory is this many chunks.
CHUNKS_IN_FLIGHT = 4
#: Object metadata that records where a copy came from and that it was verified.
META_ARCHIVE, META_TREE_HASH, META_VAULT = (
    "glacier-archive-id",
    "glacier-tree-hash",
    "glacier-vault",
)


class JobOutputExpiredError(ColdflowError):
    """A job's output is no longer downloadable (24 h after it finished): start a new job."""


@dataclass
class Copied:
    """What a copy did: bytes, the tree hash it verified, the S3 ETag, parts."""

    bytes: int
    tree_hash: str
    etag: str
    parts: int
    aborted_uploads: int = 0


def already_copied(
    s3: Any, bucket: str, key: str, archive_id: str, digest: str | None, size: int | None
) -> bool:
    """Whether ``key`` already holds this archive, verified by an earlier run.

    A copy only ever appears in S3 after its tree hash matched the vault's, and it records
    the archive id and that tree hash; when the vault's tree hash (and size) are known
    they must match the record too.
    """
    found = head(s3, bucket, key)
    if found is None:
        return False
    meta = found.get("Metadata", {})
    recorded = meta.get(META_TREE_HASH)
    return (
        meta.get(META_ARCHIVE) == archive_id
        and bool(recorded)
        and (digest is None or recorded == digest)
        and (size is None or int(found["ContentLength"]) == size)
    )


def _read_range(glacier: Any, vault: str, job_id: str, start: int, end: int) -> tuple[bytes, str]:
    """One range of a job's output and the checksum Glacier gives it."""
    try:
        answer = glacier.get_job_output(vaultName=vault, jobId=job_id, range=f"bytes={start}-{end}")
    except ClientError as exc:
        if error_code(exc) in EXPIRED_CODES:
            raise JobOutputExpiredError(f"job {job_id}: output no longer downloadable") from exc
        raise
    return answer["body"].read(), answer.get("checksum", "")


def copy_job_output(
    glacier: Any,
    s3: Any,
    vault: str,
    job_id: str,
    archive_id: str,
    bucket: str,
    key: str,
    storage_class: str = "STANDARD",
    chunks_in_flight: int = CHUNKS_IN_FLIGHT,
    smallest_chunk: int | None = None,
) -> Copied:
    """Copy one finished job's output to ``s3://bucket/key``, verified (see the module)."""
    job = glacier.describe_job(vaultName=vault, jobId=job_id)
    size = int(job["ArchiveSizeInBytes"])
    expected = job.get("ArchiveSHA256TreeHash") or job.get("SHA256TreeHash")
    if not expected:
        raise ArchiveVerificationError(f"job {job_id} reports no tree hash for {archive_id}")
    chunk = chunk_size_for(size) if smallest_chunk is None else chunk_size_for(size, smallest_chunk)
    aborted = abort_incomplete_uploads(s3, bucket, key)
    extra = {
        "StorageClass": storage_class,
        "Metadata": {META_ARCHIVE: archive_id, META_TREE_HASH: expected, META_VAULT: vault},
    }
    ranges = [
        (i, start, min(start + chunk, size) - 1) for i, start in enumerate(range(0, size, chunk))
    ]

    def fetch(item: tuple[int, int, int]) -> tuple[int, bytes, bytes]:
        index, start, end = item
        data, checksum = retry_stream(lambda: _read_range(glacier, vault, job_id, start, end))
        if len(data) != end + 1 - start:
            raise ArchiveVerificationError(
                f"{archive_id}: range {start}-{end} returned {len(data)} bytes"
            )
        digest = tree_hash(data)
        if checksum and checksum != digest:
            raise ArchiveVerificationError(
                f"{archive_id}: bytes {start}-{end} have tree hash {digest}, Glacier's checksum "
                f"for the range is {checksum}; nothing kept in S3"
            )
        return index, data, bytes.fromhex(digest)

    if len(ranges) <= 1:  # one range, one PUT
        data = b""
        hashes = []
        if ranges:
            _, data, digest = fetch(ranges[0])
            hashes.append(digest)
        _check_whole(archive_id, combine(hashes).hex() if size else tree_hash(b""), expected)
        with s3_errors(bucket, key):
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ChecksumCRC64NVME=crc64nvme_text(crc64nvme(data)),
                **extra,
            )
        remote = check_stored(
            s3,
            bucket,
            key,
            size=size,
            crc64nvme=crc64nvme_text(crc64nvme(data)),
            etag=hashlib.md5(data).hexdigest(),
        )
        return Copied(size, expected, remote, 1, aborted)

    with s3_errors(bucket, key):
        upload_id = s3.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ChecksumAlgorithm="CRC64NVME",
            ChecksumType="FULL_OBJECT",
            **extra,
        )["UploadId"]
    try:
        hashes_by_part: dict[int, bytes] = {}
        md5s: dict[int, bytes] = {}
        crcs: dict[int, tuple[int, int]] = {}  # index -> (CRC64NVME, length)
        parts: dict[int, dict] = {}

        def move(item: tuple[int, int, int]) -> int:
            index, data, digest = fetch(item)
            with s3_errors(bucket, key):
                answer = s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=data,
                    ChecksumAlgorithm="CRC64NVME",
                )
            hashes_by_part[index] = digest
            md5s[index] = hashlib.md5(data).digest()
            crcs[index] = crc64nvme(data), len(data)
            parts[index] = {
                "PartNumber": index + 1,
                "ETag": answer["ETag"],
                "ChecksumCRC64NVME": answer["ChecksumCRC64NVME"],
            }
            return index

        for _ in bounded_map(move, ranges, workers=chunks_in_flight, in_flight=chunks_in_flight):
            pass
        order = sorted(parts)
        _check_whole(archive_id, combine(hashes_by_part[i] for i in order).hex(), expected)
        whole = 0
        for i in order:
            whole = combine_crc64nvme(whole, *crcs[i])
        with s3_errors(bucket, key):
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [parts[i] for i in order]},
                ChecksumCRC64NVME=crc64nvme_text(whole),
                ChecksumType="FULL_OBJECT",
            )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    remote = check_stored(
        s3,
        bucket,
        key,
        size=size,
        crc64nvme=crc64nvme_text(whole),
        etag=f"{hashlib.md5(b''.join(md5s[i] for i in order)).hexdigest()}-{len(order)}",
    )
    return Copied(size, expected, remote, len(order), aborted)


def _check_whole(archive_id: str, combined: str, expected: str) -> None:
    if combined != expected:
        raise ArchiveVerificationError(
            f"{archive_id}: the copied bytes have tree hash {combined}, the vault says "
            f"{expected}; nothing kept in S3"
        )
