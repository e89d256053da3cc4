"""Prefetched: items come in order, at most ``depth`` ahead, errors where the loop would
have raised them, and a consumer that leaves early stops the producer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from syncd.engine.imap.prefetch import Prefetched


def test_items_come_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def produce() -> Iterator[int]:
        for n in range(50):
            threads.append(threading.current_thread().name)
            yield n

    with Prefetched(produce(), name="reader") as ahead:
        assert list(ahead) == list(range(50))
    assert set(threads) == {"reader"}


def test_the_producer_stays_at_most_depth_ahead() -> None:
    produced: list[int] = []
    taken = threading.Event()

    def produce() -> Iterator[int]:
        for n in range(100):
            produced.append(n)
            yield n

    with Prefetched(produce(), depth=2) as ahead:
        stream = iter(ahead)
        assert next(stream) == 0
        taken.wait(0.3)  # the producer runs on meanwhile, as far as it may
        # 0 taken, 2 waiting in the queue, 1 produced and waiting to be put.
        assert len(produced) <= 4
    assert len(produced) <= 5


def test_an_error_is_raised_where_the_loop_would_have_raised_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("dropped")

    got: list[int] = []
    with pytest.raises(ConnectionError, match="dropped"), Prefetched(produce()) as ahead:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_producer_and_waits_for_it() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for n in range(10_000):
            produced.append(n)
            yield n

    ahead = Prefetched(produce())
    with ahead:
        for item in ahead:
            if item == 3:
                break
    assert not ahead._thread.is_alive()
    assert len(produced) <= 6
