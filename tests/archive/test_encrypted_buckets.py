"""Archives verified by S3's checksum under any encryption: a cold bucket encrypted with a KMS
key by default gives tarballs ETags that are not an MD5, and the full-object CRC64NVME decides."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import replace

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SMALL, SPACED, live_keys, source_keys

from flows.archive import archive_plates
from flows.restore import restore_plates
from tasks.core.errors import PlatesFailedError
from tasks.formats.checksums import MultipartHasher

TAG = f"{PROJECT}_{BATCH}_{SPACED[0]}"
KMS_MANAGED = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
KMS = {
    "Rules": [
        {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:key/cold",
            }
        }
    ]
}
# big enough for a multipart tarball of 5 MiB parts
SHAPE = replace(SMALL, images=3, image_bytes=3 * 1024 * 1024)


def run(csv: str, tmp_path, **kwargs):
    return archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "scratch"), **kwargs
    )


def tarballs(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket=COLD).get("Contents", [])
    return [o["Key"] for o in listed if o["Key"].endswith(".tar.gz")]


@pytest.mark.parametrize("streaming", [False, True])
def test_kms_cold_bucket_archives_verifies_deletes_and_restores(
    s3, seed, plates_csv, tmp_path, streaming
):
    # the live bucket's objects written under its default SSE-KMS with AWS's managed key (no
    # key id): their ETags are not MD5s either
    s3.put_bucket_encryption(Bucket=LIVE, ServerSideEncryptionConfiguration=KMS_MANAGED)
    originals = seed(SPACED, shape=SHAPE)
    s3.put_bucket_encryption(Bucket=COLD, ServerSideEncryptionConfiguration=KMS)
    some = sorted(originals)[0]
    live_etag = s3.head_object(Bucket=LIVE, Key=some)["ETag"].strip('"')
    assert live_etag != hashlib.md5(originals[some]).hexdigest()
    csv = plates_csv(SPACED)
    (row,) = run(
        csv,
        tmp_path,
        delete_source=True,
        streaming=streaming,
        part_size_mib=5,
        storage_class="STANDARD",
    )
    assert row["status"] == "archived", row["message"]
    assert row["deleted"] == len(originals) and not source_keys(s3)
    multipart = 0
    for key in tarballs(s3):
        found = s3.head_object(Bucket=COLD, Key=key, ChecksumMode="ENABLED")
        assert found["ServerSideEncryption"] == "aws:kms"
        body = s3.get_object(Bucket=COLD, Key=key)["Body"].read()
        local = MultipartHasher(5 * 1024 * 1024)
        local.update(body)
        etag = found["ETag"].strip('"')
        assert etag != local.etag  # not an MD5 under KMS: the checksum decided
        assert found["ChecksumCRC64NVME"] == local.crc64nvme
        assert found["ChecksumType"] == "FULL_OBJECT"
        sidecar = s3.get_object(Bucket=COLD, Key=key.replace(".tar.gz", ".etag"))
        assert sidecar["Body"].read().decode().strip() == etag  # S3's ETag, as it gave it
        multipart += etag.endswith("-2") or etag.endswith("-3")
        listed = subprocess.run(
            ["tar", "-tzf", "-"], input=body, capture_output=True, check=True
        ).stdout.decode()
        assert listed.strip()  # GNU tar reads it
    assert multipart  # the images' tarball went up in parts
    (back,) = restore_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "r"), poll_interval=0.1
    )
    assert back["status"] == "restored", back["message"]
    assert {k: s3.get_object(Bucket=LIVE, Key=k)["Body"].read() for k in originals} == originals


def test_a_checksum_that_differs_from_the_written_one_deletes_nothing(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED, shape=SHAPE)
    s3.put_bucket_encryption(Bucket=COLD, ServerSideEncryptionConfiguration=KMS)
    wrong = loopback.override_header(
        "HEAD", r"_images_illum_analysis\.tar\.gz$", "x-amz-checksum-crc64nvme", "AAAAAAAAAAA="
    )
    with pytest.raises(PlatesFailedError) as failed:
        run(
            plates_csv(SPACED),
            tmp_path,
            delete_source=True,
            part_size_mib=5,
            storage_class="STANDARD",
        )
    assert wrong.hits
    (row,) = failed.value.summary
    assert row["status"] == "failed" and "CRC64NVME" in row["message"]
    assert set(originals) <= set(live_keys(s3))  # nothing deleted
    sidecars = s3.list_objects_v2(Bucket=COLD).get("Contents", [])
    assert not [
        o for o in sidecars if o["Key"].endswith("_images_illum_analysis.etag")
    ]  # not called verified


def test_restore_refuses_a_tarball_whose_bytes_differ_from_s3s_checksum(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED, shape=SHAPE)
    csv = plates_csv(SPACED)
    (row,) = run(csv, tmp_path, delete_source=True, part_size_mib=5, storage_class="STANDARD")
    assert row["status"] == "archived"
    wrong = loopback.override_header(
        "HEAD", r"_images_illum_analysis\.tar\.gz$", "x-amz-checksum-crc64nvme", "AAAAAAAAAAA="
    )
    with pytest.raises(PlatesFailedError) as failed:
        restore_plates(
            csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "r"), poll_interval=0.1
        )
    assert wrong.hits
    (back,) = failed.value.summary
    assert back["status"] == "failed" and "CRC64NVME" in back["message"]
    images = {k for k in originals if "/images/" in k}
    assert not images & set(live_keys(s3))  # no member of that tarball uploaded
