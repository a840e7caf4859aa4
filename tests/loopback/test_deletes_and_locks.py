"""Conditional and versioned deletes and Object Lock on the loopback endpoint, as S3 does them;
with boto3 and with the AWS CLI's own requests where it has them (``aws s3api``)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

LIVE = "live-bucket"


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def keys(s3, bucket: str = LIVE) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def versioned(s3):
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    return "versioned"


@pytest.fixture
def locked(s3):
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    return "locked"


def test_delete_objects_honours_each_etag(s3):
    s3.put_object(Bucket=LIVE, Key="changed", Body=b"1")
    s3.put_object(Bucket=LIVE, Key="same", Body=b"2")
    same = s3.head_object(Bucket=LIVE, Key="same")["ETag"]
    answer = s3.delete_objects(
        Bucket=LIVE,
        Delete={"Objects": [{"Key": "changed", "ETag": '"0123"'}, {"Key": "same", "ETag": same}]},
    )
    assert [d["Key"] for d in answer["Deleted"]] == ["same"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("changed", "PreconditionFailed")]
    assert keys(s3) == ["changed"]


def test_delete_object_if_match_is_evaluated_against_the_current_version(s3, versioned):
    old = s3.put_object(Bucket=versioned, Key="k", Body=b"1")
    s3.put_object(Bucket=versioned, Key="k", Body=b"2")
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=versioned, Key="k", VersionId=old["VersionId"], IfMatch=old["ETag"])
    assert code(refused) == "PreconditionFailed"
    with pytest.raises(ClientError) as missing:
        s3.delete_object(Bucket=LIVE, Key="never", IfMatch='"0123"')
    assert code(missing) == "NoSuchKey"


def test_versioned_deletes_add_markers_even_for_missing_keys(s3, versioned):
    v1 = s3.put_object(Bucket=versioned, Key="k", Body=b"1")["VersionId"]
    marker = s3.delete_object(Bucket=versioned, Key="k")
    ghost = s3.delete_object(Bucket=versioned, Key="never-written")
    assert marker["DeleteMarker"] and ghost["DeleteMarker"]
    listed = s3.list_object_versions(Bucket=versioned)
    assert {m["Key"] for m in listed["DeleteMarkers"]} == {"k", "never-written"}
    assert [v["VersionId"] for v in listed["Versions"]] == [v1]  # still billed
    s3.delete_object(Bucket=versioned, Key="k", VersionId=v1)  # permanent
    assert "Versions" not in s3.list_object_versions(Bucket=versioned)


def test_delete_objects_by_version_id_is_permanent_and_reports_markers(s3, versioned):
    v1 = s3.put_object(Bucket=versioned, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=versioned, Key="k", Body=b"2")["VersionId"]
    answer = s3.delete_objects(
        Bucket=versioned, Delete={"Objects": [{"Key": "k", "VersionId": v1}, {"Key": "other"}]}
    )
    deleted = {d["Key"]: d for d in answer["Deleted"]}
    assert deleted["k"]["VersionId"] == v1 and deleted["other"]["DeleteMarker"]
    listed = s3.list_object_versions(Bucket=versioned, Prefix="k")
    assert [v["VersionId"] for v in listed["Versions"]] == [v2]


def test_suspended_versioning_keeps_older_versions(s3, versioned):
    v1 = s3.put_object(Bucket=versioned, Key="k", Body=b"1")["VersionId"]
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_object(Bucket=versioned, Key="k")
    listed = s3.list_object_versions(Bucket=versioned)
    assert [v["VersionId"] for v in listed["Versions"]] == [v1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == ["null"]


def test_locked_versions_are_kept_markers_are_not_refused(s3, locked):
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    held = s3.put_object(
        Bucket=locked,
        Key="retained",
        Body=b"x",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]
    legal = s3.put_object(Bucket=locked, Key="held", Body=b"y", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    retention = s3.get_object_retention(Bucket=locked, Key="retained")["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert abs((retention["RetainUntilDate"] - until).total_seconds()) < 1
    assert s3.get_object_legal_hold(Bucket=locked, Key="held")["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as shorter:
        s3.put_object_retention(
            Bucket=locked,
            Key="retained",
            Retention={
                "Mode": "COMPLIANCE",
                "RetainUntilDate": until - datetime.timedelta(hours=1),
            },
        )
    assert code(shorter) == "AccessDenied"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=locked, Key="retained", VersionId=held)
    assert code(refused) == "AccessDenied"
    answer = s3.delete_objects(
        Bucket=locked,
        Delete={
            "Objects": [{"Key": "retained", "VersionId": held}, {"Key": "held", "VersionId": legal}]
        },
    )
    assert sorted((e["Key"], e["Code"]) for e in answer["Errors"]) == [
        ("held", "AccessDenied"),
        ("retained", "AccessDenied"),
    ]
    assert s3.delete_object(Bucket=locked, Key="retained")["DeleteMarker"]  # markers are allowed
    versions = s3.list_object_versions(Bucket=locked)["Versions"]
    assert {v["VersionId"] for v in versions} == {held, legal}
    with pytest.raises(ClientError) as none:
        s3.get_object_retention(Bucket=locked, Key="held", VersionId=legal)
    assert code(none) == "NoSuchObjectLockConfiguration"


def test_governance_retention_is_shortened_only_with_the_bypass(s3, locked):
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    s3.put_object(
        Bucket=locked,
        Key="g",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": until - datetime.timedelta(hours=1)}
    with pytest.raises(ClientError) as refused:
        s3.put_object_retention(Bucket=locked, Key="g", Retention=shorter)
    assert code(refused) == "AccessDenied"
    s3.put_object_retention(
        Bucket=locked, Key="g", Retention=shorter, BypassGovernanceRetention=True
    )


def _aws_cli() -> bool:
    if shutil.which("aws") is None:
        return False
    return subprocess.run(["aws", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _aws_cli(), reason="the AWS CLI is not installed")
def test_the_aws_cli_sees_the_same_deletes(s3, loopback, versioned):
    """The AWS CLI's own requests (s3api delete-objects with ETags, s3 rm on a versioned
    bucket) get the same answers as boto3's."""
    s3.put_object(Bucket=LIVE, Key="changed", Body=b"1")
    env = {**os.environ, **loopback.environ()}
    env.pop("AWS_CA_BUNDLE", None)
    request = json.dumps({"Objects": [{"Key": "changed", "ETag": '"0123"'}]})
    done = subprocess.run(
        ["aws", "s3api", "delete-objects", "--bucket", LIVE, "--delete", request],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["Errors"][0]["Code"] == "PreconditionFailed"
    assert keys(s3) == ["changed"]
    s3.put_object(Bucket=versioned, Key="p/k", Body=b"1")
    subprocess.run(
        ["aws", "s3", "rm", "--recursive", f"s3://{versioned}/p/"],
        env=env,
        check=True,
        capture_output=True,
    )
    listed = s3.list_object_versions(Bucket=versioned)
    assert len(listed["Versions"]) == 1 and len(listed["DeleteMarkers"]) == 1
