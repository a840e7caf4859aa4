"""The loopback endpoint answers as S3 does where moto is kinder: encryption ETags, checksums,
parts and attributes. Each test uses a plain boto3 client, as a new user would."""

from __future__ import annotations

import base64
import hashlib
import io

import boto3
import pytest
from awscrt import checksums as crt
from botocore.config import Config
from botocore.exceptions import ClientError

MIB = 1024 * 1024
BODY = bytes(range(256)) * (4 * 1024 * 11)  # 11 MiB: three parts of 5, 5 and 1 MiB


def crc64(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def kms(s3):
    s3.create_bucket(Bucket="kms-bucket")
    s3.put_bucket_encryption(
        Bucket="kms-bucket",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    return "kms-bucket"


def multipart(s3, bucket: str, key: str, body: bytes, **create) -> tuple[str, list[dict]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    parts = []
    algorithm = create.get("ChecksumAlgorithm")
    for number, start in enumerate(range(0, len(body), 5 * MIB), start=1):
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=up["UploadId"],
            PartNumber=number,
            Body=body[start : start + 5 * MIB],
            **extra,
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if algorithm:
            part[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        parts.append(part)
    return up["UploadId"], parts


# -- ETags under encryption ------------------------------------------------------------------


def test_plaintext_and_sse_s3_etags_are_the_md5(s3):
    s3.put_object(Bucket="live-bucket", Key="plain", Body=b"hello")
    s3.put_object(Bucket="live-bucket", Key="sse-s3", Body=b"hello", ServerSideEncryption="AES256")
    md5 = hashlib.md5(b"hello").hexdigest()
    for key in ("plain", "sse-s3"):
        assert s3.head_object(Bucket="live-bucket", Key=key)["ETag"] == f'"{md5}"'


@pytest.mark.parametrize("how", ["bucket default", "header", "header with key id", "dsse"])
def test_kms_etags_are_not_the_md5_but_stable(s3, kms, how):
    extra = {
        "bucket default": {},
        "header": {"ServerSideEncryption": "aws:kms"},
        "header with key id": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/lab"},
        "dsse": {"ServerSideEncryption": "aws:kms:dsse"},
    }[how]
    bucket = kms if how == "bucket default" else "live-bucket"
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", **extra)
    etag = put["ETag"].strip('"')
    assert etag != hashlib.md5(b"hello").hexdigest()
    assert len(etag) == 32 and int(etag, 16) >= 0
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == put["ETag"]  # stable
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == put["ETag"]


def test_kms_multipart_and_copy_etags(s3, kms):
    upload, parts = multipart(s3, kms, "mp", BODY)
    whole = s3.complete_multipart_upload(
        Bucket=kms, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )["ETag"].strip('"')
    md5s = b"".join(
        hashlib.md5(BODY[i : i + 5 * MIB]).digest() for i in range(0, len(BODY), 5 * MIB)
    )
    assert whole.endswith("-3") and whole != f"{hashlib.md5(md5s).hexdigest()}-3"
    s3.put_object(Bucket="live-bucket", Key="src", Body=b"copied")
    copy = s3.copy_object(Bucket=kms, Key="dst", CopySource={"Bucket": "live-bucket", "Key": "src"})
    assert copy["CopyObjectResult"]["ETag"].strip('"') != hashlib.md5(b"copied").hexdigest()


def test_sse_c_objects_need_their_key_and_have_no_md5_etag(s3):
    key = b"k" * 32
    put = s3.put_object(
        Bucket="live-bucket",
        Key="c",
        Body=b"hello",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=key,
    )
    assert put["ETag"].strip('"') != hashlib.md5(b"hello").hexdigest()
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket="live-bucket", Key="c")
    assert code(refused) == "InvalidRequest"
    got = s3.get_object(
        Bucket="live-bucket", Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=key
    )
    assert got["Body"].read() == b"hello" and got["SSECustomerAlgorithm"] == "AES256"


# -- checksums -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        {"ContentMD5": base64.b64encode(b"0" * 16).decode()},
        {"ChecksumCRC32": "AAAAAA=="},
        {"ChecksumSHA256": base64.b64encode(b"0" * 32).decode()},
        {"ChecksumCRC64NVME": "AAAAAAAAAAA="},
    ],
    ids=lambda d: next(iter(d)),
)
def test_a_wrong_digest_is_refused_and_nothing_stored(s3, digest):
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="live-bucket", Key="k", Body=b"hello", **digest)
    assert code(refused) == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket="live-bucket")


def test_a_wrong_part_digest_is_refused(s3):
    up = s3.create_multipart_upload(Bucket="live-bucket", Key="mp")
    with pytest.raises(ClientError) as refused:
        s3.upload_part(
            Bucket="live-bucket",
            Key="mp",
            UploadId=up["UploadId"],
            PartNumber=1,
            Body=b"part",
            ChecksumCRC32="AAAAAA==",
        )
    assert code(refused) == "BadDigest"


def test_uploads_without_a_checksum_get_a_crc64nvme(loopback, s3):
    plain = boto3.client(
        "s3",
        endpoint_url=loopback.endpoint_url,
        config=Config(request_checksum_calculation="when_required"),
    )
    plain.put_object(Bucket="live-bucket", Key="k", Body=b"hello")
    head = s3.head_object(Bucket="live-bucket", Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc64(b"hello")
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_full_object_crc64nvme_multipart_is_combined_and_checked(s3):
    create = {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "FULL_OBJECT"}
    upload, parts = multipart(s3, "live-bucket", "mp", BODY, **create)
    for wrong in ("AAAAAAAAAAA=", crc64(BODY[:-1])):
        with pytest.raises(ClientError) as refused:
            s3.complete_multipart_upload(
                Bucket="live-bucket",
                Key="mp",
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                ChecksumCRC64NVME=wrong,
                ChecksumType="FULL_OBJECT",
            )
        assert code(refused) == "BadDigest"
    done = s3.complete_multipart_upload(
        Bucket="live-bucket",
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": parts},
        ChecksumCRC64NVME=crc64(BODY),
        ChecksumType="FULL_OBJECT",
    )
    assert done["ChecksumCRC64NVME"] == crc64(BODY)
    head = s3.head_object(Bucket="live-bucket", Key="mp", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (crc64(BODY), "FULL_OBJECT")


def test_a_listed_part_checksum_must_match_its_part(s3):
    upload, parts = multipart(s3, "live-bucket", "mp", BODY, ChecksumAlgorithm="CRC32")
    parts[1]["ChecksumCRC32"] = parts[2]["ChecksumCRC32"]  # parts 1 and 2 hold equal bytes
    with pytest.raises(ClientError) as refused:
        s3.complete_multipart_upload(
            Bucket="live-bucket", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    assert code(refused) == "InvalidPart"


def test_composite_checksums_keep_their_part_count_on_head_and_get(s3):
    s3.upload_fileobj(io.BytesIO(BODY), "live-bucket", "comp")  # CRC32 parts, composite
    head = s3.head_object(Bucket="live-bucket", Key="comp", ChecksumMode="ENABLED")
    got = s3.get_object(Bucket="live-bucket", Key="comp", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == got["ChecksumCRC32"]
    assert head["ChecksumCRC32"].endswith("-2") and head["ChecksumType"] == "COMPOSITE"
    parts = [BODY[: 8 * MIB], BODY[8 * MIB :]]
    joined = b"".join(crt.crc32(p).to_bytes(4, "big") for p in parts)
    assert (
        head["ChecksumCRC32"]
        == base64.b64encode(crt.crc32(joined).to_bytes(4, "big")).decode() + "-2"
    )


def test_parts_by_number_and_object_attributes(s3):
    upload, parts = multipart(s3, "live-bucket", "mp", BODY, ChecksumAlgorithm="SHA256")
    s3.complete_multipart_upload(
        Bucket="live-bucket", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    second = s3.get_object(Bucket="live-bucket", Key="mp", PartNumber=2)
    assert second["Body"].read() == BODY[5 * MIB : 10 * MIB] and second["PartsCount"] == 3
    head = s3.head_object(Bucket="live-bucket", Key="mp", PartNumber=3)
    assert head["ContentLength"] == MIB and head["PartsCount"] == 3
    with pytest.raises(ClientError):
        s3.head_object(Bucket="live-bucket", Key="mp", PartNumber=4)
    attributes = s3.get_object_attributes(
        Bucket="live-bucket", Key="mp", ObjectAttributes=["ObjectParts", "Checksum", "ObjectSize"]
    )
    listed = attributes["ObjectParts"]
    assert listed["TotalPartsCount"] == 3
    assert [p["Size"] for p in listed["Parts"]] == [5 * MIB, 5 * MIB, MIB]
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [p["ChecksumSHA256"] for p in parts]
    assert attributes["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert attributes["ObjectSize"] == len(BODY)
