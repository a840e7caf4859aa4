"""The loopback endpoint's vault jobs behave as Glacier's: timing, ranges, checksums, capacity,
expiry (so the thaw flow's tests prove what production will do)."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tasks.vault.treehash import MIB, tree_hash

VAULT = "old-vault"


@pytest.fixture
def glacier(s3, loopback):
    client = boto3.client(
        "glacier", config=Config(retries={"mode": "standard", "total_max_attempts": 1})
    )
    client.create_vault(vaultName=VAULT)
    return client


def upload(glacier, body: bytes, description: str = "") -> str:
    return glacier.upload_archive(vaultName=VAULT, body=body, archiveDescription=description)[
        "archiveId"
    ]


def test_ranged_output_carries_tree_hash_checksums(glacier, loopback):
    body = bytes(range(256)) * (5 * MIB // 256) + b"end"
    answer = glacier.upload_archive(vaultName=VAULT, body=body)
    assert answer["checksum"] == tree_hash(body)  # the real tree hash, not a plain SHA-256
    job = glacier.initiate_job(
        vaultName=VAULT,
        jobParameters={"Type": "archive-retrieval", "ArchiveId": answer["archiveId"]},
    )["jobId"]
    described = glacier.describe_job(vaultName=VAULT, jobId=job)
    assert described["StatusCode"] == "Succeeded"
    assert described["ArchiveSHA256TreeHash"] == tree_hash(body)
    assert described["ArchiveSizeInBytes"] == len(body)
    part = glacier.get_job_output(
        vaultName=VAULT, jobId=job, range=f"bytes={4 * MIB}-{8 * MIB - 1}"
    )
    data = part["body"].read()
    assert data == body[4 * MIB :]
    assert part["checksum"] == tree_hash(body[4 * MIB :])  # to the end: aligned
    assert part["contentRange"] == f"bytes {4 * MIB}-{len(body) - 1}/{len(body)}"
    odd = glacier.get_job_output(vaultName=VAULT, jobId=job, range=f"bytes=1-{MIB}")
    assert "checksum" not in odd and odd["body"].read() == body[1 : MIB + 1]


def test_jobs_take_their_tier_time_and_outputs_expire(glacier, loopback):
    archive = upload(glacier, b"x" * 1000)
    loopback.vaults.durations["Bulk"] = 1.0
    job = glacier.initiate_job(
        vaultName=VAULT,
        jobParameters={"Type": "archive-retrieval", "ArchiveId": archive, "Tier": "Bulk"},
    )["jobId"]
    assert glacier.describe_job(vaultName=VAULT, jobId=job)["Completed"] is False
    listed = glacier.list_jobs(vaultName=VAULT, statuscode="InProgress")["JobList"]
    assert [j["JobId"] for j in listed] == [job]
    with pytest.raises(ClientError):
        glacier.get_job_output(vaultName=VAULT, jobId=job)
    time.sleep(1.1)
    assert glacier.describe_job(vaultName=VAULT, jobId=job)["Completed"] is True
    assert glacier.get_job_output(vaultName=VAULT, jobId=job)["body"].read() == b"x" * 1000
    loopback.vaults.expire(job)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        glacier.get_job_output(vaultName=VAULT, jobId=job)


def test_expedited_capacity_errors_on_demand(glacier, loopback):
    archive = upload(glacier, b"y")
    loopback.vaults.capacity_errors = 1
    params = {"Type": "archive-retrieval", "ArchiveId": archive, "Tier": "Expedited"}
    with pytest.raises(ClientError) as refused:
        glacier.initiate_job(vaultName=VAULT, jobParameters=params)
    assert refused.value.response["Error"]["Code"] == "InsufficientCapacityException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert glacier.initiate_job(vaultName=VAULT, jobParameters=params)["jobId"]
    assert loopback.request_counts["Glacier:InitiateJob"] == 2


def test_inventory_lists_descriptions_and_tree_hashes(glacier, loopback):
    a = upload(glacier, b"first", "plates/one.tar.gz")
    job = glacier.initiate_job(vaultName=VAULT, jobParameters={"Type": "inventory-retrieval"})
    import json

    inventory = json.loads(
        glacier.get_job_output(vaultName=VAULT, jobId=job["jobId"])["body"].read()
    )
    (row,) = inventory["ArchiveList"]
    assert (row["ArchiveId"], row["ArchiveDescription"], row["Size"]) == (a, "plates/one.tar.gz", 5)
    assert row["SHA256TreeHash"] == tree_hash(b"first")


def test_corrupted_output_keeps_true_checksums(glacier, loopback):
    body = b"z" * (2 * MIB)
    archive = upload(glacier, body)
    loopback.vaults.corrupt(archive, MIB + 5)
    job = glacier.initiate_job(
        vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
    )["jobId"]
    part = glacier.get_job_output(vaultName=VAULT, jobId=job, range=f"bytes={MIB}-{2 * MIB - 1}")
    assert part["checksum"] == tree_hash(body[MIB:]) != tree_hash(part["body"].read())
