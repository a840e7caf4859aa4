"""S3 object helpers every family uses: limits, listing, small objects, uploads with a known
part size. Clients come from :mod:`tasks.core.clients`; errors are translated by
:mod:`tasks.core.errors`."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tasks.core.clients import s3_client
from tasks.core.errors import BucketNotFoundError, http_status, is_missing, s3_errors
from tasks.core.listing import list_objects

MIB = 1024 * 1024
#: S3 refuses more parts than this in one multipart upload.
MAX_UPLOAD_PARTS = 10_000
#: The smallest part S3 accepts (but for the last one).
MIN_PART_SIZE = 5 * MIB
#: The AWS CLI's starting part size; it doubles until the parts fit.
DEFAULT_PART_SIZE = 8 * MIB
#: Keys per DeleteObjects request (the API's maximum).
DELETE_BATCH = 1000

#: The storage classes a flow may write (a form's choices in the UI).
StorageClass = Literal[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
]
#: Retrieval tiers, for restores and vault jobs alike.
Tier = Literal["Standard", "Bulk", "Expedited"]

__all__ = [
    "DEFAULT_PART_SIZE",
    "DELETE_BATCH",
    "MAX_UPLOAD_PARTS",
    "MIB",
    "MIN_PART_SIZE",
    "StorageClass",
    "Tier",
    "abort_incomplete_uploads",
    "check_bucket",
    "download",
    "download_if_exists",
    "etag_is_md5",
    "full_object_crc64nvme",
    "get_text",
    "head",
    "head_checked",
    "iter_objects",
    "part_size_for",
    "put_text",
    "s3_client",
    "split_s3_uri",
    "strip_etag",
    "transfer_config",
    "upload_path",
]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    from tasks.core.errors import InputError

    if not uri.startswith("s3://") or "/" not in uri[5:] or uri[5:].startswith("/"):
        raise InputError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def check_bucket(client: Any, bucket: str) -> None:
    """Fail with a clear message when a bucket does not exist or can't be reached."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = http_status(exc)
        if status == 404 or is_missing(exc):
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist") from exc
        if status == 403:
            raise BucketNotFoundError(
                f"bucket {bucket!r}: access denied with the current credentials"
            ) from exc
        raise


def iter_objects(client: Any, bucket: str, prefix: str, **kwargs: Any) -> Iterator[dict]:
    """Every object under a prefix, in key order: a prefix of more than a page is listed as
    several key ranges at once (:func:`tasks.core.listing.list_objects`, whose threads list
    ahead while the caller works, memory bounded). ``kwargs`` go to every request."""
    return list_objects(client, bucket, prefix, **kwargs)


def head(client: Any, bucket: str, key: str) -> dict | None:
    """HeadObject, or None when the key does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        with s3_errors(bucket, key):
            raise


def strip_etag(etag: str) -> str:
    return etag.strip().strip('"')


def etag_is_md5(found: dict) -> bool:
    """Whether S3's ETag of an object (from a HEAD) is an MD5 digest of its bytes: only for
    plaintext and SSE-S3 objects (AWS's *Object* reference: SSE-C, SSE-KMS and DSSE-KMS objects
    get an ETag that is not). A multipart ETag is then the MD5 of the parts' MD5s."""
    encryption = found.get("ServerSideEncryption")
    return encryption in (None, "AES256") and not found.get("SSECustomerAlgorithm")


def full_object_crc64nvme(found: dict) -> str | None:
    """S3's CRC64NVME of a whole object from a checked HEAD (base64), or None where it stores
    none or only a composite one (the checksum of the parts' checksums)."""
    checksum = found.get("ChecksumCRC64NVME")
    if checksum is None or found.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    return checksum


def head_checked(client: Any, bucket: str, key: str) -> dict:
    """HEAD an object with its checksum (``ChecksumMode=ENABLED``): S3's stored checksum and
    its type are in the answer (``ChecksumCRC64NVME``, ``ChecksumType``)."""
    with s3_errors(bucket, key):
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


def get_text(client: Any, bucket: str, key: str) -> str | None:
    """A small text object (sidecars), or None when missing; archived ones say so."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except ClientError as exc:
        if is_missing(exc):
            return None
        with s3_errors(bucket, key):
            raise


def put_text(client: Any, bucket: str, key: str, text: str, **extra: Any) -> str:
    """Write a small text object; returns its ETag."""
    with s3_errors(bucket, key):
        response = client.put_object(Bucket=bucket, Key=key, Body=text.encode(), **extra)
    return strip_etag(response["ETag"])


def download(client: Any, bucket: str, key: str, path: Path) -> Path:
    """Download one object to ``path``; archived or missing objects say so."""
    with s3_errors(bucket, key):
        client.download_file(bucket, key, str(path))
    return path


def download_if_exists(client: Any, bucket: str, key: str, path: Path) -> bool:
    """Stream one object to ``path`` with a single GET; False (and ``path`` left empty) when
    the key does not exist."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if not is_missing(exc):
            with s3_errors(bucket, key):
                raise
        path.write_bytes(b"")
        return False
    with open(path, "wb") as f:
        shutil.copyfileobj(body, f, MIB)
    return True


def part_size_for(size: int, start: int = DEFAULT_PART_SIZE) -> int:
    """The part size the AWS CLI would use: ``start``, doubled until ``size`` fits the parts."""
    part = max(start, MIN_PART_SIZE)
    while size > part * MAX_UPLOAD_PARTS:
        part *= 2
    return part


def transfer_config(part_size: int, concurrency: int) -> TransferConfig:
    """A TransferConfig whose multipart decision and part size match the computed ETag."""
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=concurrency > 1,
    )


def upload_path(
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    *,
    part_size: int,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
    **extra_args: Any,
) -> None:
    """Upload a local file with a known part size. ``progress`` is called with the bytes sent
    as they go. What S3 stored is checked by the caller (one HEAD, see
    :func:`tasks.core.integrity.check_stored`), not here a second time."""
    with s3_errors(bucket, key):
        client.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs=extra_args or None,
            Config=transfer_config(part_size, concurrency),
            Callback=progress,
        )


def abort_incomplete_uploads(s3: Any, bucket: str, key: str) -> int:
    """Abort incomplete multipart uploads of exactly ``key`` (a crashed run's); returns how many."""
    aborted = 0
    with s3_errors(bucket, key):
        pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Key"] == key:
                    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                    aborted += 1
    return aborted
