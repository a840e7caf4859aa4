"""prefetch and ordered_map: work ahead of the consumer, in order, errors and early stops
passed on."""

from __future__ import annotations

import itertools
import random
import threading
import time

import pytest

from tasks.core.concurrency import ordered_map, prefetch


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
