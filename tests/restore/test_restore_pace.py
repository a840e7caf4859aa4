"""restore_prefix at a rate the user sets, and sharing the account's budget with other runs
(a Prefect global concurrency limit with slot decay); what the run shows while it goes.
The rates here are lower bounds on time: a run held to a rate cannot finish sooner."""

from __future__ import annotations

import pytest
from conftest import COLD
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.restore import restore_prefix
from tasks.core.pace import GLOBAL_RESTORE_LIMIT

P = "paced/"


@pytest.fixture
def glacier(s3, loopback):
    def put(n: int) -> int:
        for i in range(n):
            s3.put_object(Bucket=COLD, Key=f"{P}{i:04d}", Body=b"x", StorageClass="GLACIER")
        loopback.clear_faults()  # and the counts and spans
        return n

    return put


def restores_span(loopback) -> float:
    first, last = loopback.request_spans["RestoreObject"]
    return last - first


def run(tmp_path, **kwargs) -> dict:
    return restore_prefix(COLD, P, wait=False, work_dir=str(tmp_path / "w"), **kwargs)


def test_max_requests_per_second_holds_a_run_to_its_rate(glacier, loopback, tmp_path):
    n = glacier(60)
    result = run(tmp_path, max_requests_per_second=40.0)
    assert result["requested"] == n
    # a burst of a tenth of a second's worth (4), then 40 a second
    assert restores_span(loopback) >= (n - 1 - 4) / 40 * 0.95


def test_a_bad_rate_is_refused_before_any_request(glacier, loopback, tmp_path):
    glacier(3)
    with pytest.raises(Exception, match="max_requests_per_second"):
        run(tmp_path, max_requests_per_second=0)
    assert loopback.request_counts == {}


@pytest.fixture
def account_budget():
    """The account's restore budget on the Prefect server: 5 slots, 50 freed a second."""
    with get_client(sync_client=True) as prefect:
        prefect.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=GLOBAL_RESTORE_LIMIT, limit=5, slot_decay_per_second=50.0, active=True
            )
        )
    yield 50.0
    with get_client(sync_client=True) as prefect:
        prefect.delete_global_concurrency_limit_by_name(GLOBAL_RESTORE_LIMIT)


def test_every_run_takes_the_accounts_budget_from_the_global_limit(
    glacier, loopback, tmp_path, account_budget
):
    n = glacier(80)
    result = run(tmp_path)
    assert result["requested"] == n
    assert restores_span(loopback) >= (n - 1 - 5) / account_budget * 0.95


def test_the_progress_artifact_shows_the_request_rate_and_throttled_answers(
    glacier, loopback, tmp_path
):
    n = glacier(30)
    loopback.inject_error(
        "POST", P, operation="RestoreObject", status=503, code="SlowDown", times=3
    )
    result = run(tmp_path)
    assert result["requested"] == n
    with get_client(sync_client=True) as prefect:
        latest = prefect.read_latest_artifacts()
    (progress,) = [a for a in latest if a.key == "restore-request-progress"]
    assert progress.type == "progress" and progress.data == 100.0
    assert f"{n:,} of {n:,} objects requested" in progress.description
    assert "requests/s" in progress.description
    assert "3 throttled (9.1 %)" in progress.description  # 3 of 33 requests
