"""Server-side copies that keep what makes an object itself, and deletion tags.

A copy carries the source's metadata, content headers and tags, and records the source's
ETag (and checksum, where S3 has one) in the copy's metadata, so a later run can tell a
changed source from a multipart copy's different ETag. Up to ``multipart_threshold`` a copy
is one ``CopyObject``; above it, a multipart copy whose parts are ``UploadPartCopy`` ranges
(one ``CopyObject`` can't exceed 5 GiB), with metadata and tags set on the upload (boto3's
managed copy drops them above its threshold). Every read of the source is pinned to the
ETag it was listed with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tasks.core.errors import ColdflowError, s3_errors
from tasks.core.s3 import MIB, part_size_for

#: One CopyObject copies at most this much (S3's limit).
SINGLE_COPY_LIMIT = 5 * 1024 * MIB
#: Metadata on a backup copy: the source ETag (and checksum) it was copied from.
META_SOURCE_ETAG = "coldflow-source-etag"
META_SOURCE_CHECKSUM = "coldflow-source-checksum"
#: S3 allows this many tags per object.
MAX_TAGS = 10
DELETED, DELETED_AT = "Deleted", "DeletedAt"
_CONTENT_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "Expires",
)


class NoRoomForTagsError(ColdflowError):
    """An object already has S3's 10 tags: its deletion can't be tagged."""


class CopyMismatchError(ColdflowError):
    """S3's checksum of a copy differs from the source's: the copy is not the source."""


def _full_object_checksums(answer: dict) -> dict[str, str]:
    """``{"ChecksumCRC32": value, ...}`` of a HEAD or copy answer (full-object ones only: a
    composite checksum of parts depends on how the object was cut)."""
    if answer.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return {}
    return {
        k: str(v) for k, v in answer.items() if k.startswith("Checksum") and k != "ChecksumType"
    }


def check_copy(source_head: dict, copied: dict, where: str) -> None:
    """Compare a copy's checksum (from S3's CopyObject answer) with the source's, for every
    algorithm both have: a copy's bytes never pass the client, so this is what says that S3
    wrote the source's bytes. Nothing to compare (no checksum on either side) is no error."""
    theirs = _full_object_checksums(copied)
    for name, value in _full_object_checksums(source_head).items():
        if name in theirs and theirs[name] != value:
            raise CopyMismatchError(
                f"{where}: S3's {name[len('Checksum') :]} of the copy is {theirs[name]}, the "
                f"source's {value}"
            )


def recorded_source_etag(head: dict) -> str:
    """The source ETag a backup copy recorded ('' for objects coldflow did not copy)."""
    return head.get("Metadata", {}).get(META_SOURCE_ETAG, "")


def _tags(s3: Any, bucket: str, key: str) -> list[dict[str, str]]:
    with s3_errors(bucket, key):
        return s3.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])


def copy_object(
    s3: Any,
    source: str,
    key: str,
    etag: str,
    target: str,
    storage_class: str = "STANDARD",
    multipart_threshold: int = SINGLE_COPY_LIMIT,
    drop_tags: tuple[str, ...] = (),
    target_key: str | None = None,
    size: int | None = None,
    record_source: bool = False,
) -> int:
    """Copy ``s3://source/key`` (as listed with ``etag`` and ``size``) to ``target``; returns
    its size.

    Metadata, content headers and tags travel (less ``drop_tags``). A single-part source
    (an MD5 ETag) of a known size is copied in one request, metadata and tags copied by S3:
    the copy's ETag is then the source's, which is the record later runs compare with.
    Otherwise (multipart sources, large objects, dropped tags, or a copy whose ETag came out
    different, as with KMS) the source ETag and checksum are recorded in the copy's metadata,
    and the copy's checksum is compared with the source's. ``record_source`` goes that way
    at once: where the target's default encryption is KMS, a copy's ETag is always its own.
    """
    target_key = target_key or key
    copy_source = {"Bucket": source, "Key": key}
    quick = (
        not record_source
        and size is not None
        and size <= min(multipart_threshold, SINGLE_COPY_LIMIT)
        and not drop_tags
        and "-" not in etag
    )
    if quick:
        with s3_errors(target, target_key):
            answer = s3.copy_object(
                Bucket=target,
                Key=target_key,
                CopySource=copy_source,
                CopySourceIfMatch=f'"{etag}"',
                MetadataDirective="COPY",
                TaggingDirective="COPY",
                StorageClass=storage_class,
            )
        if answer.get("CopyObjectResult", {}).get("ETag", "").strip('"') == etag:
            return size
    with s3_errors(source, key):
        head = s3.head_object(Bucket=source, Key=key, IfMatch=f'"{etag}"', ChecksumMode="ENABLED")
    size = int(head["ContentLength"])
    metadata = dict(head.get("Metadata", {}))
    metadata[META_SOURCE_ETAG] = etag
    checksum = next((head[k] for k in head if k.startswith("Checksum") and k != "ChecksumType"), "")
    if checksum:
        metadata[META_SOURCE_CHECKSUM] = str(checksum)
    extra: dict[str, Any] = {k: head[k] for k in _CONTENT_HEADERS if head.get(k)}
    extra.update(Metadata=metadata, StorageClass=storage_class)
    single = size <= min(multipart_threshold, SINGLE_COPY_LIMIT)
    if single and not drop_tags:  # S3 copies the tags itself: no request to read them
        tag_args: dict[str, str] = {"TaggingDirective": "COPY"}
    else:
        tags = [t for t in _tags(s3, source, key) if t["Key"] not in drop_tags]
        tagging = urlencode([(t["Key"], t["Value"]) for t in tags])
        tag_args = {"TaggingDirective": "REPLACE", "Tagging": tagging}
    with s3_errors(target, target_key):
        if single:
            answer = s3.copy_object(
                Bucket=target,
                Key=target_key,
                CopySource=copy_source,
                CopySourceIfMatch=f'"{etag}"',
                MetadataDirective="REPLACE",
                **tag_args,
                **extra,
            )
            check_copy(head, answer.get("CopyObjectResult", {}), f"s3://{target}/{target_key}")
            return size
        upload = s3.create_multipart_upload(
            Bucket=target, Key=target_key, Tagging=tag_args["Tagging"], **extra
        )["UploadId"]
        try:
            part = part_size_for(size, start=max(multipart_threshold // 4, 8 * MIB))
            parts = []
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                answer = s3.upload_part_copy(
                    Bucket=target,
                    Key=target_key,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceIfMatch=f'"{etag}"',
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            s3.complete_multipart_upload(
                Bucket=target, Key=target_key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            s3.abort_multipart_upload(Bucket=target, Key=target_key, UploadId=upload)
            raise
    return size


def tag_deleted(s3: Any, bucket: str, key: str, now: datetime | None = None) -> bool:
    """Add ``Deleted=True`` and ``DeletedAt`` (UTC, minutes) to an object's tags, keeping the
    others. False when it was tagged already; NoRoomForTagsError when S3's 10 are used."""
    tags = _tags(s3, bucket, key)
    if any(t["Key"] == DELETED and t["Value"] == "True" for t in tags):
        return False
    kept = [t for t in tags if t["Key"] not in (DELETED, DELETED_AT)]
    if len(kept) + 2 > MAX_TAGS:
        raise NoRoomForTagsError(
            f"s3://{bucket}/{key} has {len(kept)} tags; S3 allows {MAX_TAGS}, so Deleted and "
            "DeletedAt don't fit. Remove a tag, or keep track of this deletion by hand."
        )
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    kept += [{"Key": DELETED, "Value": "True"}, {"Key": DELETED_AT, "Value": stamp}]
    with s3_errors(bucket, key):
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": kept})
    return True


def untag_deleted(s3: Any, bucket: str, key: str) -> bool:
    """Remove the deletion tags (a key back in the source); True if there were any."""
    tags = _tags(s3, bucket, key)
    kept = [t for t in tags if t["Key"] not in (DELETED, DELETED_AT)]
    if len(kept) == len(tags):
        return False
    with s3_errors(bucket, key):
        if kept:
            s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": kept})
        else:  # an empty TagSet is refused by some endpoints; this is S3's own way
            s3.delete_object_tagging(Bucket=bucket, Key=key)
    return True


def is_deleted(tags: list[dict[str, str]]) -> bool:
    return any(t["Key"] == DELETED and t["Value"] == "True" for t in tags)
