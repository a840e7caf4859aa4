"""prefetch: listings read ahead by a thread, in order, errors and early stops passed on."""

from __future__ import annotations

import itertools
import threading

import pytest

from tasks.core.concurrency import prefetch


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
