"""Serving helpers shared by the reference services (the Codex node, the status peer)."""

from __future__ import annotations

import logging
import signal

import trio
from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("serving")


def hypercorn_config(bind: str, graceful_timeout_s: float = 5) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [bind]
    config.accesslog = None
    config.graceful_timeout = graceful_timeout_s
    # Keep idle connections longer than clients do: with hypercorn's 5 s default, a client reusing
    # a connection just as the server drops it sees "connection reset" on a POST it cannot retry.
    config.keep_alive_timeout = 75
    return config


async def stop_on_signals(stop: trio.Event) -> None:
    """Set `stop` on the first SIGTERM or SIGINT (graceful shutdown, exit code 0)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()
            return
