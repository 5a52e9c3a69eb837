"""`codex`: run the reference node until SIGTERM/SIGINT, then stop gracefully with exit code 0."""

from __future__ import annotations

import logging
import sys

import trio
from hypercorn.trio import serve
from testbed_toolkit.serving import hypercorn_config, stop_on_signals

from codexref import config as cfg
from codexref.api import build_app, build_metrics_app
from codexref.node import Node, set_python_log_level

log = logging.getLogger("codex")


async def maintenance(node: Node) -> None:
    """Upstream's block maintenance: every --block-mi, drop up to --block-mn expired blocks."""
    while True:
        await trio.sleep(node.config.block_maintenance_interval)
        removed = node.store.expire(node.config.block_ttl, node.config.block_maintenance_count)
        if removed:
            log.info("maintenance: %d expired blocks removed", removed)


async def run(node: Node) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, stop)
        nursery.start_soon(maintenance, node)
        await nursery.start(node.run_p2p)  # REST starts last, once the switch and engine run
        log.info(
            "%s era%s, peer id %s, listening on %s, repo %s, quota %d bytes",
            node.config.era.name,
            " (strict)" if node.config.strict else "",
            node.identity.peer_id,
            ", ".join(str(a) for a in node.host.get_addrs()),
            node.config.data_dir,
            node.config.storage_quota,
        )
        if node.config.metrics:
            metrics_bind = f"{node.config.metrics_address}:{node.config.metrics_port}"
            nursery.start_soon(
                lambda: serve(
                    build_metrics_app(node), hypercorn_config(metrics_bind), shutdown_trigger=stop.wait
                )
            )
        await serve_rest(node, stop)
        nursery.cancel_scope.cancel()


async def serve_rest(node: Node, stop: trio.Event) -> None:
    """The REST API until `stop`; none at all without a bind address (the Logos era's default)."""
    config = node.config
    if config.api_bindaddr is None:
        flag = config.era.env_name("api-bindaddr")
        log.warning("REST API is off: no --api-bindaddr / %s given (upstream's default)", flag)
        await stop.wait()
        return
    rest = hypercorn_config(f"{config.api_bindaddr}:{config.api_port}")
    print(f"REST service started on {rest.bind[0]}{config.api_prefix}", flush=True)
    await serve(build_app(node), rest, shutdown_trigger=stop.wait)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cfg.load(argv)
    set_python_log_level(config.log_level)
    trio.run(run, Node(config))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
