"""`codex`: run the reference node until SIGTERM/SIGINT, then stop gracefully with exit code 0."""

from __future__ import annotations

import logging
import sys

import trio
from testbed_toolkit.serving import stop_on_signals

from codexref import config as cfg
from codexref import lifecycle
from codexref.node import Node, set_python_log_level

log = logging.getLogger("codex")


async def run(node: Node) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, stop)
        await lifecycle.run(node, stop, rest=True)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cfg.load(argv)
    set_python_log_level(config.log_level)
    trio.run(run, Node(config))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
