"""Restores of a given version on the loopback endpoint, as S3 keeps them: per version, with
``RestoreStatus`` in ``ListObjectVersions``, and GET/HEAD of that version readable once done."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

BUCKET = "versioned-cold"


@pytest.fixture
def two_versions(s3, loopback):
    """A versioned bucket with two GLACIER versions of one key: (old, new) version ids."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="k", Body=b"old", StorageClass="GLACIER")
    new = s3.put_object(Bucket=BUCKET, Key="k", Body=b"new", StorageClass="GLACIER")
    return old["VersionId"], new["VersionId"]


def restore_status(s3) -> dict[str, dict]:
    page = s3.list_object_versions(Bucket=BUCKET, OptionalObjectAttributes=["RestoreStatus"])
    return {v["VersionId"]: v.get("RestoreStatus") for v in page["Versions"]}


def test_a_restore_of_an_older_version_restores_that_version_only(s3, loopback, two_versions):
    old, new = two_versions
    answer = s3.restore_object(Bucket=BUCKET, Key="k", VersionId=old, RestoreRequest={"Days": 1})
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert s3.get_object(Bucket=BUCKET, Key="k", VersionId=old)["Body"].read() == b"old"
    assert (
        'ongoing-request="false"'
        in s3.head_object(Bucket=BUCKET, Key="k", VersionId=old)["Restore"]
    )
    with pytest.raises(ClientError) as current:
        s3.get_object(Bucket=BUCKET, Key="k")  # the current version is still archived
    assert current.value.response["Error"]["Code"] == "InvalidObjectState"
    assert "Restore" not in s3.head_object(Bucket=BUCKET, Key="k")
    statuses = restore_status(s3)
    assert statuses[old]["IsRestoreInProgress"] is False
    assert "RestoreExpiryDate" in statuses[old]
    assert statuses[new] is None


def test_a_restore_in_progress_is_per_version(s3, loopback, two_versions):
    old, new = two_versions
    loopback.tiers.durations["Standard"] = 60.0
    s3.restore_object(Bucket=BUCKET, Key="k", VersionId=old, RestoreRequest={"Days": 1})
    with pytest.raises(ClientError) as again:
        s3.restore_object(Bucket=BUCKET, Key="k", VersionId=old, RestoreRequest={"Days": 1})
    assert again.value.response["Error"]["Code"] == "RestoreAlreadyInProgress"
    # the current version is another object: its restore is accepted
    s3.restore_object(Bucket=BUCKET, Key="k", RestoreRequest={"Days": 1})
    statuses = restore_status(s3)
    assert statuses[old] == {"IsRestoreInProgress": True}
    assert statuses[new] == {"IsRestoreInProgress": True}
    head = s3.head_object(Bucket=BUCKET, Key="k", VersionId=new)
    assert head["Restore"] == 'ongoing-request="true"'


def test_a_restore_of_a_version_the_bucket_never_had_is_no_such_version(s3, two_versions):
    with pytest.raises(ClientError) as missing:
        s3.restore_object(Bucket=BUCKET, Key="k", VersionId="nope", RestoreRequest={"Days": 1})
    assert missing.value.response["Error"]["Code"] == "NoSuchVersion"


def test_a_delete_marker_keeps_the_restores_of_the_versions_it_hides(s3, two_versions):
    old, _ = two_versions
    s3.restore_object(Bucket=BUCKET, Key="k", VersionId=old, RestoreRequest={"Days": 1})
    s3.delete_object(Bucket=BUCKET, Key="k")  # a marker: both versions stay
    assert restore_status(s3)[old]["IsRestoreInProgress"] is False
    s3.delete_object(Bucket=BUCKET, Key="k", VersionId=old)  # permanent
    assert old not in restore_status(s3)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"again", StorageClass="GLACIER")
    assert all(status is None for status in restore_status(s3).values())
