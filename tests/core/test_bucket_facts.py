"""What a flow finds about a bucket before it acts, read-only; a denied answer is "unknown"."""

from __future__ import annotations

from conftest import COLD, LIVE

from loopback.faults import Rule
from tasks.core.bucket_facts import bucket_facts, facts_markdown

KEY = "arn:aws:kms:us-east-1:123456789012:key/cold"


def test_a_plain_bucket_and_a_configured_one(s3, loopback):
    s3.delete_bucket(Bucket=COLD)
    s3.create_bucket(Bucket=COLD, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=COLD,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
        },
    )
    s3.put_bucket_encryption(
        Bucket=COLD,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": KEY,
                    }
                }
            ]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=COLD,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "cold",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "archive/"},
                    "Transitions": [{"Days": 1, "StorageClass": "DEEP_ARCHIVE"}],
                }
            ]
        },
    )
    loopback.clear_faults()
    plain, cold = bucket_facts(s3, LIVE), bucket_facts(s3, COLD)
    assert (plain.versioning, plain.object_lock, plain.lifecycle) == ("off", "off", "none")
    assert plain.encryption == "AES256" and plain.kms_key == ""
    assert cold.versioning == "Enabled"  # Object Lock turns versioning on
    assert (cold.encryption, cold.kms_key) == ("aws:kms", KEY)
    assert cold.object_lock == "on (GOVERNANCE 30 days)"
    assert cold.lifecycle == "archive/: DEEP_ARCHIVE after 1 d"
    table = facts_markdown([plain, cold])
    assert KEY in table and "GOVERNANCE" in table
    asked = set(loopback.request_counts)
    assert {"GetBucketEncryption", "GetObjectLockConfiguration"} <= asked
    assert not [op for op in asked if op.startswith(("Put", "Delete", "Create"))]  # read-only


def test_an_answer_the_caller_may_not_read_is_unknown(s3, loopback):
    denied = loopback.add_rule(
        Rule(
            match=lambda r: "encryption" in r.query or "versioning" in r.query,
            status=403,
            code="AccessDenied",
            message="Access Denied",
        )
    )
    facts = bucket_facts(s3, LIVE)
    assert denied.hits
    assert (facts.versioning, facts.encryption) == ("unknown", "unknown")
    assert facts.object_lock == "off"
