"""The restore flows killed (SIGKILL, a real child process) half-way, then run again: the
re-run finishes the work, restored objects are byte-identical, and nothing is requested or
created twice where S3 would charge for it (a Batch Operations job).
"""

from __future__ import annotations

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, kill_child_at, nth

from flows.archive import archive_plates
from flows.batch_restore import bulk_restore
from flows.restore import restore_plates, restore_prefix

RESTORE_PLATES = """
import sys
from flows.restore import restore_plates
csv, scratch, project, batch, live, cold = sys.argv[1:]
restore_plates(csv, project, batch, live, cold, scratch_dir=scratch, poll_interval=0.1)
"""
RESTORE_PREFIX = """
import sys
from flows.restore import restore_prefix
bucket, prefix, work = sys.argv[1:]
restore_prefix(bucket, prefix, work_dir=work, batch_size=100, parallel_batches=1,
               request_workers=1, poll_interval=0.1)
"""
BULK_RESTORE = """
import sys
from flows.batch_restore import bulk_restore
bucket, prefix, work = sys.argv[1:]
bulk_restore(bucket, prefix, work_dir=work, poll_interval=0.1, max_poll_interval=0.5)
"""


@pytest.mark.parametrize(
    "stage",
    ["downloading-tarball", "mid-upload"],
)
def test_restore_plates_killed_then_rerun_restores_every_object(
    loopback, s3, seed, plates_csv, tmp_path, stage
):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    archive_plates(
        csv,
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(tmp_path / "a"),
        delete_source=True,
        storage_class="STANDARD",
    )
    if stage == "downloading-tarball":
        at = nth(1, lambda r: r.operation == "GetObject" and r.key.endswith(".tar.gz"))
    else:  # some members are back, the others not yet
        at = nth(5, lambda r: r.operation == "PutObject" and r.bucket == LIVE)
    scratch = tmp_path / "r"
    kill_child_at(loopback, RESTORE_PLATES, [csv, str(scratch), PROJECT, BATCH, LIVE, COLD], at)
    (row,) = restore_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(scratch), poll_interval=0.1
    )
    assert row["status"] == "restored" and row["verified"] == len(originals)
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body, key


def test_restore_prefix_killed_mid_requests_then_rerun_requests_the_rest(loopback, s3, tmp_path):
    keys = [f"cold/{i:04d}.bin" for i in range(300)]
    for key in keys:
        s3.put_object(Bucket=COLD, Key=key, Body=key.encode(), StorageClass="GLACIER")
    loopback.tiers.durations["Standard"] = 0.5
    at = nth(150, lambda r: r.operation == "RestoreObject")
    kill_child_at(loopback, RESTORE_PREFIX, [COLD, "cold/", str(tmp_path / "w")], at)
    before = len(loopback.tiers.requests)
    assert 0 < before < len(keys)  # the run died half-way through its requests

    result = restore_prefix(
        COLD, "cold/", work_dir=str(tmp_path / "w"), poll_interval=0.1, max_poll_interval=0.5
    )
    # what the killed run asked for is back or on its way; the re-run asks for the rest only
    # and waits for everything still under way
    assert result["restored"] + result["in-progress"] == before
    assert result["requested"] == len(keys) - before and result["error"] == 0
    assert result["ready"] == result["requested"] + result["in-progress"]
    requested = [k for _, k, _, _ in loopback.tiers.requests]
    assert sorted(set(requested)) == keys
    # the re-run's listing shows what the killed run requested: those are not asked again
    assert len(requested) == len(keys)
    for key in keys:
        assert s3.get_object(Bucket=COLD, Key=key)["Body"].read() == key.encode()


def test_bulk_restore_killed_after_creating_its_job_reuses_it(loopback, s3, tmp_path):
    keys = [f"bulk/{i:03d}.bin" for i in range(50)]
    for key in keys:
        s3.put_object(Bucket=COLD, Key=key, Body=key.encode(), StorageClass="GLACIER")
    loopback.batch.task_seconds = 0.01
    # S3 creates the job; the run dies before it hears the job id
    at = nth(1, lambda r: r.operation == "S3Control:CreateJob")
    kill_child_at(loopback, BULK_RESTORE, [COLD, "bulk/", str(tmp_path / "w")], at, served=True)
    assert len(loopback.batch.created) == 1

    result = bulk_restore(
        COLD, "bulk/", work_dir=str(tmp_path / "w"), poll_interval=0.1, max_poll_interval=0.5
    )
    assert result["status"] == "Complete" and result["restored"] == len(keys)
    assert result["jobs"] == loopback.batch.created  # the same job, not a second one
    for key in keys:
        assert s3.get_object(Bucket=COLD, Key=key)["Body"].read() == key.encode()
