"""restore_prefix against the loopback endpoint's archive tiers."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest
from conftest import COLD, task_runs_of
from prefect import flow, task
from prefect.client.orchestration import get_client

from flows.restore import restore_prefix
from tasks.core.errors import CostCeilingError, InputError, RestoreTimeout
from tasks.restore.requests import restore_request

P = "restore/"
MIXED = {
    "std.bin": "STANDARD",
    "ir.bin": "GLACIER_IR",
    "glacier a.bin": "GLACIER",
    "glacier b.bin": "GLACIER",
    "deep.bin": "DEEP_ARCHIVE",
    "it hot.bin": "INTELLIGENT_TIERING",
    "it archive.bin": "INTELLIGENT_TIERING",
    "it deep.bin": "INTELLIGENT_TIERING",
    "glacier restored.bin": "GLACIER",
    "glacier ongoing.bin": "GLACIER",
}


def run(tmp_path, **kwargs):
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("max_poll_interval", 1.0)
    return restore_prefix(COLD, kwargs.pop("prefix", P), work_dir=str(tmp_path / "work"), **kwargs)


@pytest.fixture
def mixed(s3, loopback):
    for name, storage_class in MIXED.items():
        s3.put_object(
            Bucket=COLD, Key=P + name, Body=b"data " + name.encode(), StorageClass=storage_class
        )
    loopback.tiers.archive(COLD, P + "it archive.bin", "ARCHIVE_ACCESS")
    loopback.tiers.archive(COLD, P + "it deep.bin", "DEEP_ARCHIVE_ACCESS")
    s3.restore_object(
        Bucket=COLD,
        Key=P + "glacier restored.bin",
        RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}},
    )
    loopback.tiers.durations["Bulk"] = 3600
    s3.restore_object(
        Bucket=COLD,
        Key=P + "glacier ongoing.bin",
        RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}},
    )
    loopback.tiers.requests.clear()
    loopback.clear_faults()  # and the request counts
    return s3


def ledger_of(result) -> dict[str, str]:
    frame = pd.read_csv(result["ledger"], dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["key", "storage_class", "size", "status", "message"]
    return dict(zip(frame["key"].str.removeprefix(P), frame["status"], strict=True))


def test_request_shapes():
    assert restore_request("GLACIER", "Bulk", 3) == {
        "Days": 3,
        "GlacierJobParameters": {"Tier": "Bulk"},
    }
    assert restore_request("DEEP_ARCHIVE", "Standard", 7)["Days"] == 7
    assert restore_request("ARCHIVE_ACCESS", "Standard", 7) == {
        "GlacierJobParameters": {"Tier": "Standard"}
    }


def test_mixed_prefix_gets_the_right_request_per_object(mixed, loopback, tmp_path):
    result = run(tmp_path, wait=False, days=5)
    assert {(k.removeprefix(P), days, tier) for _, k, days, tier in loopback.tiers.requests} == {
        ("glacier a.bin", 5, "Standard"),
        ("glacier b.bin", 5, "Standard"),
        ("deep.bin", 5, "Standard"),
        ("it archive.bin", None, "Standard"),
        ("it deep.bin", None, "Standard"),
    }
    assert ledger_of(result) == {
        "std.bin": "not-archived",
        "ir.bin": "not-archived",
        "it hot.bin": "not-archived",
        "glacier restored.bin": "restored",
        "glacier ongoing.bin": "in-progress",
        "glacier a.bin": "requested",
        "glacier b.bin": "requested",
        "deep.bin": "requested",
        "it archive.bin": "requested",
        "it deep.bin": "requested",
    }
    assert (
        result["not-archived"],
        result["restored"],
        result["in-progress"],
        result["requested"],
        result["error"],
    ) == (3, 1, 1, 5, 0)
    # the listing told the storage classes: HEAD only for Intelligent-Tiering objects
    assert loopback.request_counts["HeadObject"] == 3


def test_filters(mixed, loopback, tmp_path):
    result = run(tmp_path, wait=False, filter_in=["glacier", "deep"], filter_out=["b.bin"])
    assert set(ledger_of(result)) == {
        "glacier a.bin",
        "deep.bin",
        "it deep.bin",
        "glacier restored.bin",
        "glacier ongoing.bin",
    }


def test_dry_run_requests_nothing(mixed, loopback, tmp_path):
    result = run(tmp_path, dry_run=True)
    assert result["archived"] == 5
    assert loopback.tiers.requests == []


def test_ledger_round_trip_and_retry_of_errors(mixed, loopback, tmp_path):
    loopback.inject_error(
        "POST",
        r"glacier [ab]\.bin$",
        status=403,
        code="AccessDenied",
        message="Access Denied",
        operation="RestoreObject",
    )
    first = run(tmp_path, wait=False, ledger_s3_uri=f"s3://{COLD}/ledgers/first.csv")
    assert first["error"] == 2
    ledger = ledger_of(first)
    assert ledger["glacier a.bin"] == ledger["glacier b.bin"] == "error"
    frame = pd.read_csv(first["ledger"], keep_default_na=False)
    assert frame.loc[frame.key == P + "glacier a.bin", "message"].item().startswith("AccessDenied")
    assert mixed.head_object(Bucket=COLD, Key="ledgers/first.csv")["ContentLength"] > 0

    loopback.clear_faults()
    loopback.tiers.requests.clear()
    second = run(tmp_path, wait=False, retry_ledger=f"s3://{COLD}/ledgers/first.csv")
    assert sorted(k.removeprefix(P) for _, k, _, _ in loopback.tiers.requests) == [
        "glacier a.bin",
        "glacier b.bin",
    ]
    after = ledger_of(second)
    assert after["glacier a.bin"] == after["glacier b.bin"] == "requested"
    assert {
        k: v
        for k, v in after.items()
        if "glacier " not in k or k.endswith("ongoing.bin") or k.endswith("restored.bin")
    } == {
        k: v
        for k, v in ledger.items()
        if "glacier " not in k or k.endswith("ongoing.bin") or k.endswith("restored.bin")
    }


def test_expedited_falls_back_to_standard(s3, loopback, tmp_path):
    s3.put_object(Bucket=COLD, Key=P + "g.bin", Body=b"g", StorageClass="GLACIER")
    loopback.tiers.expedited_unavailable = True
    result = run(tmp_path, tier="Expedited", wait=False)
    assert result["requested"] == 1 and result["fell_back"] == 1
    assert [(d, t) for _, _, d, t in loopback.tiers.requests] == [(7, "Expedited"), (7, "Standard")]


def test_expedited_on_deep_archive_is_refused_before_any_request(mixed, loopback, tmp_path):
    with pytest.raises(InputError, match=r"Expedited retrieval is not offered for DEEP_ARCHIVE"):
        run(tmp_path, tier="Expedited")
    assert loopback.tiers.requests == []
    assert "RestoreObject" not in loopback.request_counts


def test_expensive_expedited_needs_allow_expensive(s3, loopback, tmp_path):
    for i in range(3):
        s3.put_object(Bucket=COLD, Key=f"{P}{i}.bin", Body=b"z" * 1000, StorageClass="GLACIER")
    with pytest.raises(InputError, match=r"would cost about \$0\.03.*allow_expensive=True"):
        run(tmp_path, tier="Expedited", expensive_objects=2)
    assert loopback.tiers.requests == []
    assert (
        run(tmp_path, tier="Expedited", expensive_objects=2, allow_expensive=True, wait=False)[
            "requested"
        ]
        == 3
    )


def test_sensor_holds_downstream_until_restores_finish(s3, loopback, tmp_path):
    keys = [f"{P}{i:03d} sensor.bin" for i in range(30)]
    for key in keys:
        s3.put_object(Bucket=COLD, Key=key, Body=b"cold " + key.encode(), StorageClass="GLACIER")
    loopback.tiers.durations["Standard"] = 2.0

    @task
    def read_all() -> tuple[float, int]:
        return time.monotonic(), sum(
            len(s3.get_object(Bucket=COLD, Key=k)["Body"].read()) for k in keys
        )

    @flow
    def restore_then_read() -> tuple[dict, float, int]:
        started = time.monotonic()
        counts = restore_prefix(
            COLD, P, poll_interval=0.2, max_poll_interval=0.5, work_dir=str(tmp_path / "w")
        )
        read_at, nbytes = read_all()
        return counts, read_at - started, nbytes

    counts, waited, nbytes = restore_then_read()
    assert counts["requested"] == 30 and counts["ready"] == 30
    assert waited >= 2.0  # the reads came after the restores, which took 2 s
    assert nbytes == sum(len(b"cold " + k.encode()) for k in keys)


def test_reading_while_in_progress_fails_at_the_endpoint(s3, loopback, tmp_path):
    s3.put_object(Bucket=COLD, Key=P + "slow.bin", Body=b"s", StorageClass="DEEP_ARCHIVE")
    loopback.tiers.durations["Standard"] = 30
    run(tmp_path, wait=False)
    with pytest.raises(s3.exceptions.ClientError, match="InvalidObjectState"):
        s3.get_object(Bucket=COLD, Key=P + "slow.bin")


def test_sensor_timeout_fails_with_counts(s3, loopback, tmp_path):
    for i in range(4):
        s3.put_object(Bucket=COLD, Key=f"{P}{i}.bin", Body=b"t", StorageClass="GLACIER")
    loopback.tiers.durations["Standard"] = 60
    with pytest.raises(RestoreTimeout, match="4 of 4 restores still in progress") as failed:
        run(tmp_path, timeout=1.0)
    assert failed.value.counts == {"ready": 0, "in-progress": 4, "error": 0}


def test_throttling_is_retried_and_nothing_is_lost(s3, loopback, tmp_path):
    loopback.bulk_put(COLD, (f"{P}{i:04d}.bin" for i in range(300)), storage_class="GLACIER")
    loopback.throttle(rate=0.3, operation="RestoreObject")
    loopback.throttle(rate=0.3, operation="ListObjects")
    result = run(tmp_path, wait=True)
    assert (result["requested"], result["error"], result["ready"]) == (300, 0, 300), result
    assert len({k for _, k, _, _ in loopback.tiers.requests}) == 300


def test_ten_thousand_objects_with_few_task_runs(s3, loopback, tmp_path):
    n = 10_000
    loopback.bulk_put(COLD, (f"{P}big/{i:06d}.tif" for i in range(n)), storage_class="GLACIER")
    loopback.tiers.durations["Standard"] = 1.0

    @flow
    def big() -> tuple[dict, str]:
        from prefect.runtime import flow_run

        return restore_prefix(
            COLD,
            P + "big/",
            poll_interval=0.5,
            max_poll_interval=2.0,
            parallel_batches=2,
            work_dir=str(tmp_path / "w"),
        ), flow_run.id

    counts, run_id = big()
    assert counts["requested"] == n and counts["ready"] == n and counts["error"] == 0
    requests = loopback.request_counts
    assert requests["RestoreObject"] == n
    sensor_and_listing = requests["ListObjects"] + requests.get("HeadObject", 0)
    assert sensor_and_listing <= 2 * n / 100  # listing polls: 1,000 keys a request

    task_runs = task_runs_of(run_id)
    assert 10 <= task_runs <= 15  # 10 batches + the sensor, not one per object


def test_listing_reports_restore_state_for_every_key(s3):
    """The loopback endpoint tracks restores under the keys S3 stores (UTF-8, '%', '+', '&'),
    so the sensor's listing sees them all and a re-run does not re-request them."""
    keys = ["plain.bin", "sp ace.bin", "plus+.bin", "pct%41.bin", "amp&.bin", "ünï.bin"]
    for k in keys:
        s3.put_object(Bucket=COLD, Key=P + k, Body=b"x", StorageClass="GLACIER")
        s3.restore_object(Bucket=COLD, Key=P + k, RestoreRequest={"Days": 1})
    page = s3.list_objects_v2(Bucket=COLD, Prefix=P, OptionalObjectAttributes=["RestoreStatus"])
    listed = {o["Key"].removeprefix(P): o.get("RestoreStatus") for o in page["Contents"]}
    assert all(listed[k] is not None for k in keys), listed


def test_deleted_objects_and_buckets_leave_nothing_behind(s3, loopback):
    """As in S3, an object written again after a delete has no restore, and the endpoint
    lets go of what was deleted (a long benchmark's endpoint otherwise grows and slows)."""
    import gc

    from moto.s3.models import FakeKey

    def head(bucket: str, key: str) -> dict:
        return s3.head_object(Bucket=bucket, Key=key)

    loopback.tiers.durations["Standard"] = 3600
    s3.put_object(Bucket=COLD, Key=P + "again.bin", Body=b"x", StorageClass="GLACIER")
    s3.restore_object(Bucket=COLD, Key=P + "again.bin", RestoreRequest={"Days": 1})
    assert head(COLD, P + "again.bin")["Restore"] == 'ongoing-request="true"'
    s3.delete_bucket_lifecycle(Bucket=COLD)  # a subresource: the bucket and its restores stay
    s3.delete_object_tagging(Bucket=COLD, Key=P + "again.bin")
    assert head(COLD, P + "again.bin")["Restore"] == 'ongoing-request="true"'
    s3.delete_object(Bucket=COLD, Key=P + "again.bin")
    s3.put_object(Bucket=COLD, Key=P + "again.bin", Body=b"y", StorageClass="STANDARD")
    assert "Restore" not in head(COLD, P + "again.bin")
    assert s3.get_object(Bucket=COLD, Key=P + "again.bin")["Body"].read() == b"y"

    bucket = "dropped-bucket"
    s3.create_bucket(Bucket=bucket)
    loopback.bulk_put(bucket, (f"k{i}" for i in range(500)), storage_class="GLACIER")
    s3.restore_object(Bucket=bucket, Key="k0", RestoreRequest={"Days": 1})
    gc.collect()
    before = len(list(FakeKey.instances_tracked))
    for start in range(0, 500, 250):
        objects = [{"Key": f"k{i}"} for i in range(start, start + 250)]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    s3.delete_bucket(Bucket=bucket)
    gc.collect()
    assert len(list(FakeKey.instances_tracked)) <= before - 500
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k0", Body=b"x", StorageClass="GLACIER")
    assert "Restore" not in head(bucket, "k0")


def test_one_completion_event_per_restore(mixed, tmp_path):
    from conftest import restore_events

    result = run(tmp_path, tier="Standard", prefix=P, filter_out=["ongoing"])

    events = restore_events(lambda e: e.payload.get("ledger") == result["ledger"])
    assert [e.event for e in events] == ["coldflow.restore.complete"]
    payload = events[0].payload
    assert payload["percent"] == 100.0 and payload["failed"] == 0
    assert payload["restored"] == payload["total"] > 0
    assert events[0].resource.id == f"coldflow.restore.s3://{COLD}/{P}"


# --- requests overlap the listing, under a cost ceiling ---------------------------------------

MB = 1_000_000


def put_glacier(loopback, n: int, size: int = 10) -> list[str]:
    keys = [f"{P}c/{i:05d}.bin" for i in range(n)]
    loopback.bulk_put(COLD, keys, body=b"x" * size, storage_class="GLACIER")
    return keys


def test_requests_start_before_the_listing_ends(s3, loopback, tmp_path):
    put_glacier(loopback, 1_100)  # two pages of listing
    order: list[str] = []

    def seen(request, environ, start_response):
        if request.operation in ("ListObjects", "RestoreObject"):
            order.append(request.operation)

    loopback.injector.responders.append(seen)
    result = run(tmp_path, prefix=P + "c/", batch_size=100, parallel_batches=1, wait=False)
    assert result["requested"] == 1_100
    last_page = max(i for i, op in enumerate(order) if op == "ListObjects")
    assert order.index("RestoreObject") < last_page  # the first batch went before page 2


def test_cost_ceiling_stops_requests_and_a_rerun_requests_the_rest(s3, loopback, tmp_path):
    # Standard from GLACIER: $0.05 per 1,000 requests, so a batch of 100 costs $0.005
    keys = put_glacier(loopback, 500)
    with pytest.raises(CostCeilingError) as stopped:
        run(tmp_path, prefix=P + "c/", batch_size=100, parallel_batches=1, max_cost_usd=0.012)
    message = str(stopped.value)
    assert "stopped at the cost ceiling of $0.01" in message
    assert "200 objects requested" in message and "300 more were not requested" in message
    assert "whole restore would cost about $0.03" in message
    assert stopped.value.counts["requested"] == 200 and stopped.value.counts["archived"] == 300
    assert len(loopback.tiers.requests) == 200  # nothing beyond the ceiling
    ledger = pd.read_csv(next((tmp_path / "work").glob("*-ledger.csv")))
    assert (ledger["status"] == "archived").sum() == 300

    again = run(tmp_path, prefix=P + "c/", max_cost_usd=1.0)
    assert again["requested"] == 300 and again["error"] == 0
    assert again["restored"] + again["in-progress"] == 200  # the first run's, not asked again
    assert sorted({k for _, k, _, _ in loopback.tiers.requests}) == keys
    assert len(loopback.tiers.requests) == 500


def test_expedited_over_the_ceiling_is_refused_before_any_request(s3, loopback, tmp_path):
    put_glacier(loopback, 50, size=MB)
    with pytest.raises(CostCeilingError) as refused:
        run(tmp_path, prefix=P + "c/", tier="Expedited", max_cost_usd=0.1)
    assert "nothing was requested" in str(refused.value)
    assert loopback.tiers.requests == []


def test_default_ceilings_by_tier():
    from tasks.restore.pricing import DEFAULT_MAX_COST_USD

    assert DEFAULT_MAX_COST_USD == {"Expedited": 100.0, "Standard": 100.0, "Bulk": None}


def test_estimate_artifact_follows_the_listing(s3, loopback, tmp_path, monkeypatch):
    import prefect.artifacts

    import flows.requests

    put_glacier(loopback, 300)
    shown: list[str] = []
    create = prefect.artifacts.create_markdown_artifact

    def recorded(*args, **kwargs):
        if kwargs.get("key") == "restore-estimate":
            shown.append(kwargs["markdown"])
        return create(*args, **kwargs)

    monkeypatch.setattr(flows.requests, "create_markdown_artifact", recorded)
    monkeypatch.setattr(flows.requests, "BOARD_SECONDS", 0.0)
    run(tmp_path, prefix=P + "c/", batch_size=100, parallel_batches=1, wait=False)
    assert len(shown) >= 3 and "listing in progress" in shown[0]
    assert shown[-1].endswith("final.") and "300 objects" in shown[-1]


def test_a_versioned_bucket_restores_current_versions_and_says_so(s3, loopback, tmp_path, caplog):
    s3.put_bucket_versioning(Bucket=COLD, VersioningConfiguration={"Status": "Enabled"})
    key = P + "versioned.bin"
    s3.put_object(Bucket=COLD, Key=key, Body=b"older", StorageClass="GLACIER")
    s3.put_object(Bucket=COLD, Key=key, Body=b"current", StorageClass="GLACIER")
    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        result = run(tmp_path, wait=True)
    assert result["requested"] == 1
    assert s3.get_object(Bucket=COLD, Key=key)["Body"].read() == b"current"
    said = [r.getMessage() for r in caplog.records if "is versioned (Enabled)" in r.getMessage()]
    assert len(said) == 1 and "current version" in said[0]
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts()
    (facts,) = [a for a in latest if a.key == "restore-prefix-buckets"]
    assert f"| {COLD} | Enabled |" in facts.data
