"""thaw_vault_archives against the loopback endpoint's vaults."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from conftest import COLD

from flows.vault import ArchivesFailedError, thaw_vault_archives
from tasks.core.errors import InputError
from tasks.vault.copy import META_TREE_HASH
from tasks.vault.treehash import MIB, tree_hash

VAULT = "lab-vault"
FAST = {"poll_interval": 0.2, "max_poll_interval": 0.5, "timeout": 60}


def body_of(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def vault(s3, loopback):
    g = boto3.client("glacier")
    g.create_vault(vaultName=VAULT)

    def upload(body: bytes, description: str = "") -> str:
        return g.upload_archive(vaultName=VAULT, body=body, archiveDescription=description)[
            "archiveId"
        ]

    return g, upload


def archive_ids(g) -> set[str]:
    import json

    job = g.initiate_job(vaultName=VAULT, jobParameters={"Type": "inventory-retrieval"})
    out = g.get_job_output(vaultName=VAULT, jobId=job["jobId"])["body"].read()
    return {a["ArchiveId"] for a in json.loads(out)["ArchiveList"]}


def test_thaws_into_s3_byte_identical_then_deletes(vault, s3, loopback):
    g, upload = vault
    small, big = b"a small archive", body_of(20 * MIB + 123)  # three 8 MiB chunks, the last short
    bodies = {"plates/one tar.gz": small, "plates/ünïcode two.tar.gz": big}
    ids = {upload(body): key for key, body in bodies.items()}
    rows = thaw_vault_archives(
        VAULT,
        COLD,
        archives=ids,
        prefix="vault/",
        delete_archive=True,
        storage_class="DEEP_ARCHIVE",
        **FAST,
    )
    assert [r["status"] for r in rows] == ["thawed", "thawed"]
    assert all(r["tree_hash_ok"] and r["deleted"] for r in rows)
    for key, expected in bodies.items():
        s3.restore_object(Bucket=COLD, Key="vault/" + key, RestoreRequest={"Days": 1})
        got = s3.get_object(Bucket=COLD, Key="vault/" + key)
        assert got["Body"].read() == expected
        assert got["StorageClass"] == "DEEP_ARCHIVE"
        assert got["Metadata"][META_TREE_HASH] == tree_hash(expected)
    big_row = next(r for r in rows if r["bytes"] == len(big))
    assert "3 part(s)" in big_row["message"]
    assert archive_ids(g) == set()  # the vault is empty


def test_copies_into_a_kms_bucket_are_verified_by_their_checksum(vault, s3, loopback):
    """Under SSE-KMS S3's ETag is not an MD5: the full-object CRC64NVME, combined from the parts'
    and sent with the upload, is what S3 checks and the copy is compared with."""
    from awscrt.checksums import crc64nvme

    from tasks.formats.checksums import crc64nvme_text

    _, upload = vault
    s3.put_bucket_encryption(
        Bucket=COLD,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    bodies = {"one": b"a small archive", "two": body_of(20 * MIB + 5)}
    ids = {upload(body): key for key, body in bodies.items()}
    rows = thaw_vault_archives(VAULT, COLD, archives=ids, delete_archive=True, **FAST)
    assert [r["status"] for r in rows] == ["thawed", "thawed"], rows
    for key, body in bodies.items():
        found = s3.head_object(Bucket=COLD, Key=key, ChecksumMode="ENABLED")
        assert found["ServerSideEncryption"] == "aws:kms"
        assert found["ETag"].strip('"').split("-")[0] != hashlib.md5(body).hexdigest()
        assert found["ChecksumCRC64NVME"] == crc64nvme_text(crc64nvme(body))
        assert found["ChecksumType"] == "FULL_OBJECT"


def test_expedited_falls_back_to_standard_per_archive(vault, loopback):
    _, upload = vault
    a, b = upload(b"first"), upload(b"second")
    loopback.vaults.capacity_errors = 1  # the first Expedited start is refused
    rows = thaw_vault_archives(VAULT, COLD, archives={a: "a", b: "b"}, tier="Expedited", **FAST)
    assert sorted(r["tier"] for r in rows) == ["Expedited", "Standard"]
    fell = next(r for r in rows if r["tier"] == "Standard")
    assert "Expedited capacity short" in fell["message"]
    # the fallback came at once: no botocore retry of the 503
    assert loopback.request_counts["Glacier:InitiateJob"] == 3


def test_the_sensor_waits_for_the_jobs(vault, s3, loopback):
    _, upload = vault
    a = upload(b"slow")
    loopback.vaults.durations["Bulk"] = 2.0
    import time

    t = time.monotonic()
    rows = thaw_vault_archives(VAULT, COLD, archives={a: "slow.bin"}, tier="Bulk", **FAST)
    assert time.monotonic() - t >= 2.0
    assert rows[0]["status"] == "thawed"
    assert s3.get_object(Bucket=COLD, Key="slow.bin")["Body"].read() == b"slow"
    assert loopback.request_counts["Glacier:DescribeJob"] >= 2  # polled, then copied


def test_a_corrupt_range_keeps_the_archive_and_fails_its_row(vault, s3, loopback):
    g, upload = vault
    good, bad = upload(b"fine"), upload(body_of(10 * MIB, 2))
    loopback.vaults.corrupt(bad, 9 * MIB)
    with pytest.raises(ArchivesFailedError, match="1 of 2 archives not thawed") as failed:
        thaw_vault_archives(
            VAULT, COLD, archives={good: "good", bad: "bad"}, delete_archive=True, **FAST
        )
    rows = {r["key"]: r for r in failed.value.summary}
    assert rows["good"]["status"] == "thawed" and rows["good"]["deleted"]
    assert rows["bad"]["status"] == "failed" and not rows["bad"]["deleted"]
    assert "Glacier's checksum" in rows["bad"]["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket=COLD, Prefix="bad")
    assert not s3.list_multipart_uploads(Bucket=COLD).get("Uploads")
    assert archive_ids(g) == {bad}  # kept


def test_a_crash_between_copy_and_delete_finishes_on_rerun_without_copying(vault, s3, loopback):
    g, upload = vault
    a = upload(body_of(9 * MIB, 3))
    loopback.inject_error(operation="Glacier:DeleteArchive", status=500, code="InternalError")
    with pytest.raises(ArchivesFailedError, match="archive was not deleted"):
        thaw_vault_archives(VAULT, COLD, archives={a: "x.bin"}, delete_archive=True, **FAST)
    loopback.clear_faults()
    rows = thaw_vault_archives(VAULT, COLD, archives={a: "x.bin"}, delete_archive=True, **FAST)
    assert rows[0]["status"] == "skipped" and rows[0]["deleted"] and rows[0]["tree_hash_ok"]
    counts = loopback.request_counts
    assert counts.get("Glacier:GetJobOutput", 0) == 0 and counts.get("Glacier:InitiateJob", 0) == 0
    assert archive_ids(g) == set()


def test_a_rerun_after_the_archives_were_deleted_skips_them_as_done(vault, s3, loopback):
    """Glacier's DeleteArchive is idempotent: the second thaw finds the verified copies and
    deletes again without an error, so every row is skipped and deleted, none failed."""
    g, upload = vault
    ids = {upload(b"first archive"): "one.bin", upload(b"second archive"): "two.bin"}
    first = thaw_vault_archives(VAULT, COLD, archives=ids, delete_archive=True, **FAST)
    assert [r["status"] for r in first] == ["thawed", "thawed"] and archive_ids(g) == set()
    loopback.clear_faults()
    again = thaw_vault_archives(VAULT, COLD, archives=ids, delete_archive=True, **FAST)
    assert [(r["status"], r["deleted"], r["tree_hash_ok"]) for r in again] == [
        ("skipped", True, True),
        ("skipped", True, True),
    ]
    counts = loopback.request_counts
    assert counts.get("Glacier:DeleteArchive") == 2 and not counts.get("Glacier:InitiateJob")


def test_deleting_an_archive_the_vault_never_had_is_not_found(vault):
    g, _ = vault
    with pytest.raises(g.exceptions.ResourceNotFoundException):
        g.delete_archive(vaultName=VAULT, archiveId="no-such-archive")


def test_whole_vault_named_from_descriptions(vault, s3, loopback):
    _, upload = vault
    upload(b"one", "2019/plate A.tar.gz")
    odd = upload(b"two", "../escape")
    rows = thaw_vault_archives(VAULT, COLD, prefix="thawed/", **FAST)
    assert sorted(r["key"] for r in rows) == sorted(["thawed/2019/plate A.tar.gz", f"thawed/{odd}"])
    assert s3.get_object(Bucket=COLD, Key="thawed/2019/plate A.tar.gz")["Body"].read() == b"one"


def test_dry_run_starts_no_job_and_bad_input_is_refused_first(vault, loopback, tmp_path):
    _, upload = vault
    a = upload(b"data")
    loopback.clear_faults()
    rows = thaw_vault_archives(VAULT, COLD, archives={a: "k"}, dry_run=True, **FAST)
    assert rows[0]["status"] == "dry-run"
    assert not any(op.startswith("Glacier:InitiateJob") for op in loopback.request_counts)
    with pytest.raises(InputError, match="not a Glacier archive id"):
        thaw_vault_archives(VAULT, COLD, archives={"nope/../x": "k"}, **FAST)
    with pytest.raises(InputError, match="is the target of"):
        thaw_vault_archives(VAULT, COLD, archives={a: "same", "b" * 40: "same"}, **FAST)
    with pytest.raises(InputError, match="does not exist"):
        thaw_vault_archives("no-such-vault", COLD, archives={a: "k"}, **FAST)
    csv = tmp_path / "archives.csv"
    csv.write_text("archive,key\nx,y\n")
    with pytest.raises(InputError, match="missing column"):
        thaw_vault_archives(VAULT, COLD, archives=str(csv), **FAST)
    assert "Glacier:InitiateJob" not in loopback.request_counts


def test_expensive_expedited_needs_permission(vault, loopback):
    _, upload = vault
    a = upload(b"data")
    with pytest.raises(InputError, match="allow_expensive"):
        thaw_vault_archives(
            VAULT, COLD, archives={a: "k"}, tier="Expedited", expensive_objects=0, **FAST
        )
    assert "Glacier:InitiateJob" not in loopback.request_counts


COPY_IN_A_CHILD = """
import re, sys
from tasks.core.clients import client
from tasks.vault.copy import copy_job_output
from tasks.vault.jobs import start_job
vault, archive, key = sys.argv[1:4]
job = start_job(client("glacier", retries=False), vault, archive, "Standard")
copied = copy_job_output(client("glacier"), client("s3"), vault, job.job_id, archive,
                         "cold-bucket", key)
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's
# before exec)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
print(copied.parts, int(peak.group(1)) // 1024)
"""


def test_a_multi_chunk_archive_streams_in_flat_memory(vault, s3, loopback):
    """A copy's peak memory does not grow with the archive: 2 chunks in flight, whatever
    the size (measured in a process of its own; not a power of two in size)."""
    import os
    import subprocess
    import sys

    _, upload = vault
    # buffers of a megabyte and more mapped and unmapped as they come and go: glibc's
    # default keeps some freed chunks in each thread's arena (how many varies from run to
    # run), which would measure the allocator, not what the copy holds
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MIB)}
    peaks = {}
    for mib in (48, 160):  # both keep every chunk slot busy
        data = body_of(mib * MIB + 77, mib)
        archive = upload(data)
        out = subprocess.run(
            [sys.executable, "-c", COPY_IN_A_CHILD, VAULT, archive, f"flat-{mib}.bin"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split()
        parts, peaks[mib] = int(out[0]), int(out[1])
        assert parts == mib // 8 + 1
        assert s3.get_object(Bucket=COLD, Key=f"flat-{mib}.bin")["Body"].read() == data
    # 112 MiB more archive, less than a chunk and a half more memory
    assert peaks[160] - peaks[48] < 12, peaks


def test_expired_output_gets_a_new_job(vault, s3, loopback):
    _, upload = vault
    a = upload(b"late")
    loopback.vaults.output_window = 0.0  # output gone as soon as the job finishes
    with pytest.raises(ArchivesFailedError):
        thaw_vault_archives(VAULT, COLD, archives={a: "late.bin"}, **FAST)
    assert loopback.request_counts["Glacier:InitiateJob"] == 2  # one new job, then give up


def test_a_running_job_is_reused_never_doubled(vault, s3, loopback):
    g, upload = vault
    a = upload(b"already asked for")
    loopback.vaults.durations["Standard"] = 1.0
    g.initiate_job(vaultName=VAULT, jobParameters={"Type": "archive-retrieval", "ArchiveId": a})
    rows = thaw_vault_archives(VAULT, COLD, archives={a: "reused.bin"}, **FAST)
    assert rows[0]["status"] == "thawed" and "reused a running job" in rows[0]["message"]
    assert loopback.vaults.started == [(VAULT, a, "Standard")]  # only the job started by hand
