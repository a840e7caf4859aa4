"""bulk_restore against the loopback endpoint's Batch Operations stand-in."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pandas as pd
import pytest
from conftest import COLD, restore_events, task_runs_of

from flows.batch_restore import bulk_restore
from tasks.core.clients import client

P = "bulk/"
ODD_KEYS = ["a space.bin", "plus+sign.bin", "per%cent.bin", "and&amp.bin", "ünï cødé.bin"]


def run(tmp_path, **kwargs):
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("max_poll_interval", 0.5)
    return bulk_restore(COLD, work_dir=str(tmp_path / "work"), **kwargs)


def put(s3, keys, storage_class="GLACIER"):
    for key in keys:
        s3.put_object(
            Bucket=COLD, Key=key, Body=b"data " + key.encode(), StorageClass=storage_class
        )


def readable(s3, key) -> bool:
    return s3.get_object(Bucket=COLD, Key=key)["Body"].read().startswith(b"data ")


def test_odd_keys_complete_through_one_job(s3, loopback, tmp_path):
    keys = [P + k for k in ODD_KEYS]
    put(s3, keys)
    put(s3, [P + "hot.bin"], "STANDARD")
    result = run(tmp_path, prefix=P)
    assert result["status"] == "Complete"
    assert result["total"] == len(keys) and result["restored"] == len(keys)
    assert result["failed"] == 0 and result["percent"] == 100.0
    assert result["not_archived"] == 1
    assert len(result["jobs"]) == 1 and loopback.batch.created == result["jobs"]
    assert all(readable(s3, k) for k in keys)
    job = loopback.batch.job(result["jobs"][0])
    assert job.total == len(keys) and job.succeeded == len(keys)


def test_mixed_classes_split_into_two_jobs(s3, loopback, tmp_path):
    put(s3, [P + "g.bin"], "GLACIER")
    put(s3, [P + "d.bin"], "DEEP_ARCHIVE")
    put(s3, [P + "it.bin"], "INTELLIGENT_TIERING")
    loopback.tiers.archive(COLD, P + "it.bin", "DEEP_ARCHIVE_ACCESS")
    result = run(tmp_path, prefix=P, tier="Standard", days=3)
    assert result["status"] == "Complete" and len(result["jobs"]) == 2
    operations = sorted(
        str(loopback.batch.job(j).request["Operation"]["S3InitiateRestoreObject"])
        for j in result["jobs"]
    )
    assert "ExpirationInDays" in operations[0] or "ExpirationInDays" in operations[1]
    assert sum("ExpirationInDays" in op for op in operations) == 1
    days = {(k, d) for _, k, d, _ in loopback.tiers.requests}
    assert (P + "it.bin", None) in days and (P + "g.bin", 3) in days
    assert result["restored"] == 3


def test_rerun_reuses_the_job_and_dry_run_creates_none(s3, loopback, tmp_path):
    put(s3, [P + f"k{i}" for i in range(20)])
    dry = run(tmp_path, prefix=P, dry_run=True)
    assert dry["status"] == "Estimated" and dry["jobs"] == [] and loopback.batch.created == []
    loopback.batch.task_seconds = 0.01
    first = run(tmp_path, prefix=P, wait=False)
    assert first["status"] == "Requested" and len(first["jobs"]) == 1
    again = run(tmp_path, prefix=P)
    assert again["jobs"] == first["jobs"]
    assert loopback.batch.created == first["jobs"]
    assert again["status"] == "Complete" and again["percent"] == 100.0


def test_failed_tasks_land_in_the_ledger_as_failed(s3, loopback, tmp_path):
    put(s3, [P + f"k{i}" for i in range(10)])
    loopback.batch.fail_tasks(r"k[37]$", code="AccessDenied", message="Access Denied")
    ledger = tmp_path / "ledger.csv"
    result = run(tmp_path, prefix=P, ledger_path=str(ledger))
    assert result["status"] == "Complete"
    assert result["failed"] == 2 and result["restored"] == 8 and result["percent"] == 100.0
    frame = pd.read_csv(ledger, keep_default_na=False)
    failed = frame[frame["status"] == "error"]
    assert sorted(failed["key"]) == [P + "k3", P + "k7"]
    assert failed["message"].str.contains("AccessDenied").all()


@pytest.mark.parametrize("ending", ["Failed", "Cancelled"])
def test_a_failed_or_cancelled_job_ends_the_flow_with_its_status_and_event(
    s3, loopback, tmp_path, ending
):
    put(s3, [P + f"k{i}" for i in range(30)])
    if ending == "Failed":
        loopback.batch.fail_next("Reading the manifest failed")
    else:
        loopback.batch.task_seconds = 0.2

        def cancel():
            import threading
            import time

            def later():
                while not loopback.batch.created:
                    time.sleep(0.05)
                time.sleep(0.5)
                client("s3control").update_job_status(
                    AccountId="123456789012",
                    JobId=loopback.batch.created[0],
                    RequestedJobStatus="Cancelled",
                    StatusUpdateReason="stopped by hand",
                )

            threading.Thread(target=later, daemon=True).start()

        cancel()
    result = run(tmp_path, prefix=P)
    assert result["status"] == ending
    assert result["failed"] > 0 and result["restored"] < 30
    events = restore_events(lambda e: e.payload.get("jobs") == result["jobs"])
    assert [e.event for e in events] == [f"coldflow.restore.{ending.lower()}"]


def test_notification_configuration_is_untouched(s3, loopback, tmp_path):
    config = {
        "QueueConfigurations": [
            {
                "Id": "restores",
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:restores",
                "Events": ["s3:ObjectRestore:Completed"],
            }
        ]
    }
    client("sqs").create_queue(QueueName="restores")
    s3.put_bucket_notification_configuration(Bucket=COLD, NotificationConfiguration=config)
    before = s3.get_bucket_notification_configuration(Bucket=COLD)
    put(s3, [P + "k"])
    loopback.clear_faults()  # and the counts: the setup's own PUT ?notification is not the flow's
    assert run(tmp_path, prefix=P)["status"] == "Complete"
    after = s3.get_bucket_notification_configuration(Bucket=COLD)
    before.pop("ResponseMetadata"), after.pop("ResponseMetadata")
    assert after == before
    assert loopback.request_counts.get("PutBucketNotificationConfiguration", 0) == 0


def test_user_manifest_and_one_event_per_request(s3, loopback, tmp_path):
    keys = [P + k for k in ODD_KEYS]
    put(s3, keys)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("".join(f"{COLD},{quote(k)}\n" for k in keys), encoding="utf-8")
    result = run(tmp_path, manifest=str(manifest))
    assert result["status"] == "Complete" and result["restored"] == len(keys)
    events = restore_events(lambda e: e.payload.get("jobs") == result["jobs"])
    assert len(events) == 1 and events[0].event == "coldflow.restore.complete"
    assert events[0].payload["percent"] == 100.0


def test_expedited_is_refused_before_any_request(s3, loopback, tmp_path):
    put(s3, [P + "k"])
    loopback.clear_faults()
    with pytest.raises(Exception, match=r"Standard|Bulk"):
        run(tmp_path, prefix=P, tier="Expedited")
    assert loopback.request_counts == {}


def test_twenty_thousand_objects_one_job_progress_to_100(s3, loopback, tmp_path, progress_shown):
    loopback.bulk_put(COLD, (f"{P}big/{i:06d}" for i in range(20_000)), storage_class="GLACIER")
    loopback.clear_faults()
    loopback.tiers.durations["Bulk"] = 1.0
    shown = progress_shown
    result = run(tmp_path, prefix=P + "big/")
    assert shown[-1] == 100.0 and len(shown) >= 2
    assert shown == sorted(shown) and shown[0] == 0.0
    assert result["status"] == "Complete" and len(result["jobs"]) == 1
    assert result["total"] == 20_000 and result["restored"] == 20_000 and result["percent"] == 100
    counts = loopback.request_counts
    assert counts["S3Control:CreateJob"] == 1
    assert counts.get("RestoreObject", 0) == 0  # the job sent them, not the flow
    assert task_runs_of_latest() < 15


def task_runs_of_latest() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    async def latest():
        async with get_client() as c:
            runs = await c.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
            return runs[0].id

    return task_runs_of(asyncio.run(latest()))


def test_s3_inventory_manifest_needs_no_request_per_object(s3, loopback, tmp_path):
    import gzip
    import json

    keys = [P + k for k in ODD_KEYS]
    put(s3, keys)
    put(s3, [P + "hot.bin"], "STANDARD")
    rows = "".join(f'"{COLD}","{quote(k)}","6","GLACIER",""\n' for k in keys)
    rows += f'"{COLD}","{quote(P + "hot.bin")}","4","STANDARD",""\n'
    s3.put_object(
        Bucket=COLD, Key="inventory/data/part-0.csv.gz", Body=gzip.compress(rows.encode())
    )
    described = {
        "sourceBucket": COLD,
        "destinationBucket": f"arn:aws:s3:::{COLD}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, StorageClass, IntelligentTieringAccessTier",
        "files": [{"key": "inventory/data/part-0.csv.gz", "size": 1, "MD5checksum": "x"}],
    }
    s3.put_object(Bucket=COLD, Key="inventory/manifest.json", Body=json.dumps(described).encode())
    loopback.clear_faults()
    result = run(tmp_path, manifest=f"s3://{COLD}/inventory/manifest.json")
    assert result["status"] == "Complete" and result["restored"] == len(keys)
    assert result["not_archived"] == 1 and result["listed"] == len(keys) + 1
    assert loopback.request_counts.get("HeadObject", 0) == 1  # the uploaded manifest's ETag
