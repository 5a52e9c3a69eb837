"""harness.parallel: bounded, ordered, and stopping at the first failure."""

from __future__ import annotations

import threading

import pytest

from harness.parallel import all_of
from harness.waits import NotYet


def test_all_of_keeps_the_calls_order_and_runs_at_most_limit_at_once() -> None:
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def call(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] == 3:
                release.set()  # three at once: the limit is reached
        assert release.wait(10), "never three calls at once"
        with lock:
            running[0] -= 1
        return i * i

    assert all_of([lambda i=i: call(i) for i in range(9)], limit=3) == [i * i for i in range(9)]
    assert most[0] == 3


def test_all_of_raises_the_first_failure_and_starts_nothing_more() -> None:
    started: list[int] = []
    cancelled = threading.Event()  # set by no one: a started call holds its worker up to 1 s

    def call(i: int) -> int:
        started.append(i)
        if i == 0:
            raise NotYet("node 0 never answered")
        cancelled.wait(1)
        return i

    with pytest.raises(NotYet, match="node 0"):
        all_of([lambda i=i: call(i) for i in range(50)], limit=1)
    assert len(started) <= 2, "the one worker may have taken the next call; the rest were dropped"


def test_all_of_without_a_limit_runs_every_call_at_once() -> None:
    barrier = threading.Barrier(5, timeout=10)  # broken unless all five wait on it together
    assert all_of([lambda i=i: (barrier.wait(), i)[1] for i in range(5)]) == list(range(5))
