"""Calls that wait on the network, not the CPU, run side by side in threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def all_of(calls: list[Callable[[], T]], limit: int | None = None) -> list[T]:
    """The calls' results in their order, `limit` running at a time (all at once without one).
    On the first failure the calls not started yet are dropped, and it is raised once the running
    ones end; each call carries its own deadline."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(limit or len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
