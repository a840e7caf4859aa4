"""prefetch and ordered_map: work ahead of the consumer, in order, errors and early stops
passed on."""

from __future__ import annotations

import itertools
import random
import threading
import time

import pytest

from tasks.core.concurrency import bounded_map, ordered_map, prefetch, unordered_map


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


def test_ordered_map_keeps_order_whatever_finishes_first():
    def slow(i: int) -> int:
        time.sleep(random.random() / 500)
        return i * i

    got = list(ordered_map(slow, range(300), workers=8))
    assert got == [(i, i * i) for i in range(300)]


def test_ordered_map_runs_a_bounded_window_ahead_and_raises_in_order():
    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        if i == 5:
            raise OSError(28, "No space left on device")
        return i

    seen = []
    with pytest.raises(OSError, match="No space"):
        for item, _ in ordered_map(work, itertools.count(), workers=2, ahead=4):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]  # everything before the failure, in order
    assert max(started) < 5 + 4  # never more than the window past the consumer


def test_ordered_map_holds_at_most_its_weight_budget_ahead_and_one_item_however_heavy():
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        return i

    ahead = []
    weights = {i: 10 for i in range(100)} | {50: 1000}  # one item over the budget on its own
    for i, _ in ordered_map(work, range(100), workers=4, ahead=64, weight=weights.get, budget=35):
        ahead.append(len(started) - 1 - i)
    assert max(ahead) <= 3  # 35 bytes hold three items of 10 beyond the one being read
    assert len(started) == 100
    assert list(range(100)) == sorted(started)


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
