"""The pace (tasks/core/pace.py): AIMD on requests in flight, shared by every client of a
process, and the run's rate caps. Speeds are the benchmarks' (bench/restore_bench.py); here,
what the pace does with each answer and that requests really wait for it."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.retries.standard import ExponentialBackoff
from conftest import LIVE

from tasks.core import pace
from tasks.core.clients import client, s3_client
from tasks.core.pace import BACKOFF, GROWTH, Pace, RateCap, kind_of, pace_for, rate_cap


def test_each_operation_counts_against_its_ceiling():
    assert kind_of("RestoreObject") == "restore"
    for op in (
        "PutObject",
        "CopyObject",
        "DeleteObjects",
        "UploadPart",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
        "PutObjectTagging",
    ):
        assert kind_of(op) == "write", op
    for op in ("GetObject", "HeadObject", "ListObjectsV2", "ListObjectVersions", "GetJobOutput"):
        assert kind_of(op) == "read", op


def test_the_limit_doubles_per_round_trip_until_the_first_slowdown_then_grows_by_one():
    p = Pace("restore", start=4)
    slots = [p.acquire() for _ in range(4)]
    for sent in slots:  # every answer clean while the limit bound: +1 each
        p.release(sent, throttled=False)
    assert p.limit == 8
    slots = [p.acquire() for _ in range(8)]
    p.release(slots.pop(), throttled=True)
    assert p.limit == pytest.approx(8 * BACKOFF)
    for sent in slots:  # sent before the cut: a SlowDown among them doesn't cut again
        p.release(sent, throttled=True)
    assert p.limit == pytest.approx(8 * BACKOFF)
    assert (p.sent, p.throttled) == (12, 8)
    limit = p.limit
    slots = [p.acquire() for _ in range(int(limit))]
    for sent in slots:  # after a SlowDown: one more per round trip, not one per answer
        p.release(sent, throttled=False)
    assert limit < p.limit < limit + 1.5


def test_after_a_slowdown_the_limit_is_back_in_seconds_then_grows_faster_and_faster(
    monkeypatch,
):
    now = [1000.0]
    monkeypatch.setattr(pace.time, "monotonic", lambda: now[0])
    p = Pace("read", start=200)

    def round_trip() -> None:  # the limit's worth of requests, all answered clean
        for sent in [p.acquire() for _ in range(int(p.limit))]:
            p.release(sent, throttled=False)

    p.probing = False
    p.release(p.acquire(), throttled=True)
    assert p.limit == pytest.approx(200 * BACKOFF)
    back = (200 * (1 - BACKOFF) / GROWTH) ** (1 / 3)  # 4.6 s, however long a round trip
    now[0] += back / 4
    round_trip()
    assert p.limit == pytest.approx(200 - 40 * (3 / 4) ** 3, abs=1)  # most of the way back
    now[0] += back * 3 / 4
    round_trip()
    assert p.limit == pytest.approx(200, abs=1)  # back where it was cut
    now[0] += 5
    round_trip()
    assert p.limit == pytest.approx(200 + GROWTH * 5**3, abs=1)  # then faster and faster


def test_a_limit_that_does_not_bind_does_not_grow():
    p = Pace("read", start=10)
    for _ in range(100):
        p.release(p.acquire(), throttled=False)  # one in flight at a time
    assert p.limit == 10


def test_a_slowdown_after_the_cut_cuts_again_and_the_limit_stays_above_one():
    p = Pace("write", start=2)
    for _ in range(10):
        p.release(p.acquire(), throttled=True)
    assert p.limit == 1 and p.throttled == 10


def test_no_more_requests_are_let_go_than_the_limit():
    p = Pace("read", start=3)
    most, now, lock = [0], [0], threading.Lock()

    def one():
        sent = p.acquire()
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.01)
        with lock:
            now[0] -= 1
        p.release(sent, throttled=True)  # keep the limit where it is (at its floor, 1, or 3)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] <= 3 and p.sent == 20 and p.in_flight == 0


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


def test_every_client_request_goes_through_its_buckets_pace(s3, loopback, no_backoff):
    """A SlowDown from the endpoint reaches the pace of that bucket's reads: counted, the limit
    cut; the answered request is counted too, and the slot given back."""
    pace.reset_paces()
    s3.put_object(Bucket=LIVE, Key="p.txt", Body=b"abc")
    loopback.inject_error("GET", r"p\.txt$", status=503, code="SlowDown", times=2)
    assert s3_client().get_object(Bucket=LIVE, Key="p.txt")["Body"].read() == b"abc"
    reads = pace_for(s3_client().meta.endpoint_url, LIVE, "read").snapshot()
    assert (reads.sent, reads.throttled, reads.in_flight) == (3, 2, 0)
    assert reads.limit == int(pace.START["read"] * BACKOFF * BACKOFF)
    assert loopback.request_counts["GetObject"] == 3


def test_a_slowdown_to_a_head_counts_though_its_answer_has_no_body(s3, loopback, no_backoff):
    """S3 answers a HEAD without a body, so botocore sees code "503", not "SlowDown"."""
    pace.reset_paces()
    s3.put_object(Bucket=LIVE, Key="h.txt", Body=b"abc")
    loopback.inject_error("HEAD", r"h\.txt$", status=503, code="SlowDown", times=1)
    assert s3_client().head_object(Bucket=LIVE, Key="h.txt")["ContentLength"] == 3
    reads = pace_for(s3_client().meta.endpoint_url, LIVE, "read").snapshot()
    assert (reads.sent, reads.throttled) == (2, 1)
    assert loopback.request_counts["HeadObject"] == 2


def test_restores_share_one_pace_per_endpoint_whatever_the_bucket(s3, loopback):
    pace.reset_paces()
    restorer = client("s3", retries=False)
    for bucket in (LIVE, "other-bucket"):
        with pytest.raises(Exception):  # noqa: B017 - the answer does not matter, the count does
            restorer.restore_object(Bucket=bucket, Key="nothing", RestoreRequest={"Days": 1})
    restores = pace.totals("restore")
    assert restores["sent"] == 2 and restores["in_flight"] == 0
    assert pace_for(restorer.meta.endpoint_url, "any", "restore").sent == 2


def test_a_rate_cap_lets_go_no_more_than_its_rate_after_its_burst():
    cap = RateCap(50.0)  # burst: 5
    began = time.monotonic()
    threads = [threading.Thread(target=lambda: [cap.wait() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 requests: 5 at once, then 15 at 50 a second
    assert time.monotonic() - began >= 15 / 50 * 0.95


def test_a_runs_cap_is_shared_by_its_tasks_and_absent_without_a_rate():
    assert rate_cap("run-a", None) is None
    assert rate_cap("run-a", 10.0) is rate_cap("run-a", 10.0)
    assert rate_cap("run-a", 10.0) is not rate_cap("run-b", 10.0)
