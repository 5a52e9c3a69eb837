"""One way to wait: a deadline, a named target, and the culprit's last log lines on failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from harness.errors import WaitTimeout

T = TypeVar("T")


class Deadline:
    """One deadline for a whole operation: every wait in it gets what is left, not a fresh budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def remaining(self) -> float:
        """Seconds left, at least a moment: a step that starts at the deadline still gets one try."""
        return max(0.1, self.seconds - (time.monotonic() - self.start))


class NotYet(Exception):
    """Raised by a probe to say 'not ready yet, and here is why' (kept for the timeout message)."""


def wait_until(
    what: str,
    probe: Callable[[], T],
    deadline_s: float,
    interval_s: float | Callable[[], float] = 0.5,
    culprit: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns a truthy value or the deadline passes.

    `probe` may raise NotYet(reason) to keep waiting, or any other exception to fail at once
    (a container that exited must not be waited on). `interval_s` may be a function giving the
    next pause (a probe that tracks progress polls rarely early, often near the end). On timeout
    the error says what was awaited, for how long, the last reason, and `culprit()` (typically
    the last log lines).
    """
    start = time.monotonic()
    last_reason: list[str] = ["no answer yet"]

    def attempt() -> T:
        try:
            return probe()
        except NotYet as exc:
            last_reason[0] = str(exc)
            raise

    retrying = Retrying(
        stop=stop_after_delay(deadline_s),
        wait=wait_fixed(interval_s) if isinstance(interval_s, int | float) else lambda _: interval_s(),
        retry=retry_if_exception_type(NotYet) | retry_if_result(lambda result: not result),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError:
        elapsed = time.monotonic() - start
        detail = culprit() if culprit else ""
        raise WaitTimeout(
            f"timed out after {elapsed:.1f}s (deadline {deadline_s:.0f}s) waiting for {what}: "
            f"{last_reason[0]}" + (f"\n{detail}" if detail else "")
        ) from None
