"""The generic sensor: backoff, counts, timeout, one progress artifact."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from tasks.core.errors import SensorTimeout
from tasks.core.sensor import Backoff, Look, wait_until_done


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def draining(pending: int, per_look: int, fail_every: int = 0):
    """A check that finishes ``per_look`` items each look (every ``fail_every``-th fails)."""
    state = {"pending": pending, "looks": 0}

    def check() -> Look:
        state["looks"] += 1
        done = min(per_look, state["pending"])
        state["pending"] -= done
        failed = 1 if fail_every and state["looks"] % fail_every == 0 and done else 0
        return Look(
            finished={"ready": done - failed, "error": failed},
            pending=state["pending"],
            requests=1,
            problems=["k: broke"] if failed else [],
        )

    return check, state


def test_backs_off_and_counts_by_status():
    t = FakeTime()
    check, state = draining(10, 2, fail_every=2)
    waited = wait_until_done(
        check,
        total=10,
        pending=10,
        backoff=Backoff(poll_interval=1, max_poll_interval=5, timeout=1000),
        clock=t.clock,
        sleep=t.sleep,
    )
    assert t.sleeps == [1, 2, 4, 5, 5]  # doubles, capped
    assert waited.counts == {"ready": 8, "error": 2}
    assert (waited.polls, waited.requests, state["looks"]) == (5, 5, 5)


def test_nothing_pending_returns_without_looking():
    t = FakeTime()
    check, state = draining(0, 1)
    waited = wait_until_done(
        check, total=3, pending=0, backoff=Backoff(1, 1, 10), clock=t.clock, sleep=t.sleep
    )
    assert state["looks"] == 0 and t.sleeps == [] and waited.counts == {"ready": 0, "error": 0}


def test_timeout_fails_with_counts_by_status():
    t = FakeTime()
    check, _ = draining(10, 1)
    with pytest.raises(SensorTimeout, match="7 of 10 jobs still in progress after 6 s") as err:
        wait_until_done(
            check,
            total=10,
            pending=10,
            backoff=Backoff(poll_interval=2, max_poll_interval=2, timeout=6),
            noun="jobs",
            clock=t.clock,
            sleep=t.sleep,
        )
    assert err.value.counts == {"ready": 3, "error": 0, "in-progress": 7}
    assert sum(t.sleeps) <= 6.0 + 1e-9  # never sleeps past the deadline


def test_one_progress_artifact_reaches_100():
    @flow
    def watch() -> None:
        check, _ = draining(6, 2)
        wait_until_done(
            check,
            total=8,
            pending=6,  # two finished before the wait
            backoff=Backoff(0.01, 0.01, 10),
            artifact_key="sensor-test-progress",
        )

    watch()
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts()
    mine = [a for a in latest if a.key == "sensor-test-progress"]
    assert len(mine) == 1 and mine[0].type == "progress" and float(mine[0].data) == 100.0
