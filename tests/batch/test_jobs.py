"""The create_job request: its shape against botocore's model (Stubber), its token, and what
the loopback stand-in reads of it; the S3 Control host name for custom endpoints."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.serialize import create_serializer
from botocore.stub import Stubber

from loopback.restxml import parse_xml
from tasks.batch.jobs import client_token, job_request
from tasks.batch.manifest import decode_key, encode_key
from tasks.core.clients import _strip_account_host, is_custom_endpoint


def request(kind: str = "days", **changes) -> dict:
    args = dict(
        account_id="123456789012",
        bucket="cold",
        manifest_bucket="cold",
        manifest_key="coldflow-batch/abc/manifest-days-0123.csv",
        manifest_etag='"d41d8cd98f00b204e9800998ecf8427e"',
        kind=kind,
        tier="Bulk",
        days=7,
        role_arn="arn:aws:iam::123456789012:role/coldflow-batch-operations",
        report_bucket="cold",
        report_prefix="coldflow-batch/abc/reports",
        description="coldflow bulk-restore",
    )
    args.update(changes)
    return job_request(**args)


def test_create_job_request_is_valid_for_the_service_model():
    control = boto3.client("s3control", region_name="us-east-1")
    wanted = request()
    with Stubber(control) as stub:
        stub.add_response("create_job", {"JobId": "job-1"}, expected_params=wanted)
        assert control.create_job(**wanted)["JobId"] == "job-1"
        stub.assert_no_pending_responses()
    restore = wanted["Operation"]["S3InitiateRestoreObject"]
    assert restore == {"ExpirationInDays": 7, "GlacierJobTier": "BULK"}
    assert wanted["Report"]["ReportScope"] == "AllTasks"
    assert wanted["Manifest"]["Location"]["ETag"] == "d41d8cd98f00b204e9800998ecf8427e"


def test_archive_access_jobs_have_no_expiration():
    assert request("archive-access")["Operation"] == {
        "S3InitiateRestoreObject": {"GlacierJobTier": "BULK"}
    }


def test_token_is_deterministic_and_depends_on_the_request():
    token = request()["ClientRequestToken"]
    assert token == request()["ClientRequestToken"] and 1 <= len(token) <= 64
    assert token != request(days=8)["ClientRequestToken"]
    assert token != request(tier="Standard")["ClientRequestToken"]
    assert token != request(manifest_etag="other")["ClientRequestToken"]
    assert client_token("cold", '"abc"', "Bulk", 7) == client_token("cold", "abc", "Bulk", 7)


def test_the_stand_in_reads_what_botocore_sends():
    control = boto3.client("s3control", region_name="us-east-1")
    model = control.meta.service_model.operation_model("CreateJob")
    wanted = request()
    serialized = create_serializer("rest-xml").serialize_to_request(wanted, model)
    parsed = parse_xml(ET.fromstring(serialized["body"]))
    assert parsed["ClientRequestToken"] == wanted["ClientRequestToken"]
    assert parsed["Manifest"]["Spec"]["Fields"] == ["Bucket", "Key"]
    assert (
        parsed["Manifest"]["Location"]["ObjectArn"] == wanted["Manifest"]["Location"]["ObjectArn"]
    )
    assert parsed["Operation"]["S3InitiateRestoreObject"] == {
        "ExpirationInDays": "7",
        "GlacierJobTier": "BULK",
    }
    assert parsed["Report"]["Enabled"] == "true" and parsed["RoleArn"] == wanted["RoleArn"]
    assert serialized["headers"]["x-amz-account-id"] == "123456789012"


@pytest.mark.parametrize(
    "key", ["a space.bin", "plus+sign", "per%cent", "and&amp", "ünï/cødé", "semi;colon,comma"]
)
def test_manifest_keys_round_trip_whatever_plus_means(key):
    from urllib.parse import unquote_plus

    encoded = encode_key(key)
    assert "," not in encoded and " " not in encoded and "+" not in encoded
    assert decode_key(encoded) == key == unquote_plus(encoded)


class _Client:
    class meta:
        endpoint_url = "http://127.0.0.1:5055"


def test_account_prefix_is_stripped_for_custom_endpoints_only():
    assert is_custom_endpoint("http://127.0.0.1:5055")
    assert is_custom_endpoint("https://minio.example.org")
    assert not is_custom_endpoint("https://s3-control.us-east-1.amazonaws.com")
    strip = _strip_account_host(_Client)
    req = AWSRequest("GET", "http://123456789012.127.0.0.1:5055/v20180820/jobs/x")
    strip(req)
    assert req.url == "http://127.0.0.1:5055/v20180820/jobs/x"
    other = AWSRequest("GET", "http://123456789012.s3-control.amazonaws.com/v20180820/jobs")
    strip(other)
    assert other.url.startswith("http://123456789012.s3-control.amazonaws.com/")


def test_real_aws_clients_keep_the_account_in_the_host(monkeypatch):
    from tasks.core import clients

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    clients.reset_clients()
    sent = []

    def capture(request, **_):
        sent.append(request.url)
        raise _StopError

    try:
        control = clients.client("s3control")
        control.meta.events.register("before-send.s3-control", capture)
        with pytest.raises(_StopError):
            control.describe_job(AccountId="123456789012", JobId="job-12345")
        assert sent[0].startswith("https://123456789012.s3-control.us-east-1.amazonaws.com/")
    finally:
        clients.reset_clients()


class _StopError(Exception):
    pass
