"""prefetch, unordered_map and bounded_map: work ahead of the consumer, bounded, errors and
early stops passed on."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tasks.core.concurrency import bounded_map, pipelined, prefetch, together, unordered_map


def test_items_come_in_order():
    assert list(prefetch(range(1000), depth=3)) == list(range(1000))


def test_a_producer_error_is_raised_in_the_consumer():
    def pages():
        yield 1
        raise ValueError("listing broke")

    got = []
    with pytest.raises(ValueError, match="listing broke"):
        for item in prefetch(pages()):
            got.append(item)
    assert got == [1]


def test_the_producer_runs_ahead_and_stops_with_the_consumer():
    drawn = []

    def counted():
        for i in itertools.count():
            drawn.append(i)
            yield i

    before = threading.active_count()
    items = prefetch(counted(), depth=2)
    assert next(items) == 0
    items.close()
    assert threading.active_count() == before  # the producer thread ended
    assert 1 <= len(drawn) <= 5  # ahead by its depth, not the whole (endless) listing


def test_unordered_map_hands_over_what_finished_while_a_slow_call_runs():
    release = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            assert release.wait(10)  # the head of the listing answers last
        return i * i

    seen = []
    for item, result in unordered_map(work, range(40), workers=4, ahead=8):
        seen.append(item)
        assert result == item * item
        if len(seen) == 30:
            release.set()
    assert sorted(seen) == list(range(40))
    assert seen[0] != 0 and seen.index(0) >= 30  # nothing waited behind the slow call


def test_unordered_map_keeps_its_window_and_budget_and_raises_the_first_error():
    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        if i == 60:
            raise OSError(28, "No space left on device")
        return i

    weights = {i: 10 for i in range(200)} | {20: 1000}  # one item over the budget on its own
    seen: list[int] = []
    with pytest.raises(OSError, match="No space"):
        for item, _ in unordered_map(
            work, range(200), workers=3, ahead=6, weight=weights.get, budget=35
        ):
            seen.append(item)
            assert len(started) - len(seen) <= 4  # 35 of weight: three of 10 and the fourth
    assert 60 not in seen and max(started) < 60 + 6
    assert set(range(50)) <= set(seen)  # what came before the failure was handed over


def test_bounded_map_yields_every_result_once():
    assert sorted(bounded_map(lambda i: -i, range(500), workers=8)) == sorted(
        -i for i in range(500)
    )


def test_together_runs_every_call_at_once_and_raises_after_all_ended():
    both = threading.Barrier(3, timeout=10)  # broken (an error) unless all three run at once

    def call(label: str):
        return lambda: (both.wait(), label)[1]

    assert together(call("a"), call("b"), call("c")) == ["a", "b", "c"]
    ended = []

    def slow() -> None:
        time.sleep(0.2)
        ended.append("slow")

    def broken() -> None:
        raise ValueError("no such bucket")

    with pytest.raises(ValueError, match="no such bucket"):
        together(broken, slow)
    assert ended == ["slow"]


def test_together_at_most_runs_calls_in_turn_and_starts_none_after_a_failure():
    running, most, started = [0], [0], []
    lock = threading.Lock()

    def call(label: str, fails: bool = False):
        def run() -> str:
            with lock:
                started.append(label)
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            if fails:
                raise ValueError(f"{label} failed")
            return label

        return run

    assert together(*(call(x) for x in "abcd"), at_most=2) == list("abcd")
    assert most[0] == 2
    started.clear()
    with pytest.raises(ValueError, match="a failed"):
        together(call("a", fails=True), call("b"), call("c"), at_most=1)
    assert started == ["a"]


def test_pipelined_runs_the_next_first_step_while_the_last_second_step_runs():
    log: list[str] = []
    shipping = threading.Event()

    def make(item: str) -> str:
        if item == "b":  # b is made while a ships: a's second step waits for this
            assert shipping.wait(5)
        log.append(f"make {item}")
        return item.upper()

    def ship(made: str) -> str:
        if made == "A":
            shipping.set()
            time.sleep(0.05)
        log.append(f"ship {made}")
        return made + "!"

    assert pipelined("abc", make, ship) == ["A!", "B!", "C!"]
    assert log.index("make b") < log.index("ship A")
    log.clear()
    assert pipelined("ab", str.upper, lambda m: log.append(m) or m, overlap=False) == ["A", "B"]
    assert log == ["A", "B"]


def test_pipelined_starts_no_second_step_after_a_failure_and_waits_for_the_one_running():
    shipped: list[str] = []

    def ship(made: str) -> str:
        time.sleep(0.05)
        if made == "a":
            raise ValueError("a failed to ship")
        shipped.append(made)
        return made

    with pytest.raises(ValueError, match="a failed to ship"):
        pipelined("abc", str, ship)
    assert shipped == []  # b was made meanwhile, but never shipped

    def make(item: str) -> str:
        if item == "b":
            raise ValueError("b failed to make")
        return item

    with pytest.raises(ValueError, match="b failed to make"):
        pipelined("abc", make, lambda m: time.sleep(0.05) or shipped.append(m) or m)
    assert shipped == ["a"]  # a's shipping, running when b failed, ended first
