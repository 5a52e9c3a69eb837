"""A node's tasks from start to stop: libp2p and the engine, block maintenance, the metrics
server and (for the `codex` command) the REST API. The command runs them until a signal; a
status peer embedding the node (as status-go embeds libstorage) runs them without REST."""

from __future__ import annotations

import logging

import trio
from hypercorn.trio import serve
from testbed_toolkit.serving import hypercorn_config

from codexref.api import build_app, build_metrics_app
from codexref.node import Node

log = logging.getLogger("codex")


async def maintenance(node: Node) -> None:
    """Upstream's block maintenance: every --block-mi, drop up to --block-mn expired blocks."""
    while True:
        await trio.sleep(node.config.block_maintenance_interval)
        removed = node.store.expire(node.config.block_ttl, node.config.block_maintenance_count)
        if removed:
            log.info("maintenance: %d expired blocks removed", removed)


async def run(node: Node, stop: trio.Event, rest: bool, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Until `stop`, then the node's connections and listeners closed before its tasks end;
    reports started once the switch and engine run (REST starts after them)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(maintenance, node)
        await nursery.start(node.run_p2p)
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
        task_status.started()
        if rest:
            await serve_rest(node, stop)
        else:
            await stop.wait()
        await node.close()
        nursery.cancel_scope.cancel()


async def serve_rest(node: Node, stop: trio.Event) -> None:
    """The REST API until `stop`; none at all without a bind address (the Logos era's default)."""
    config = node.config
    if config.api_bindaddr is None:
        flag = config.era.env_name("api-bindaddr")
        log.warning("REST API is off: no --api-bindaddr / %s given (upstream's default)", flag)
        await stop.wait()
        return
    bind = hypercorn_config(f"{config.api_bindaddr}:{config.api_port}")
    print(f"REST service started on {bind.bind[0]}{config.api_prefix}", flush=True)
    await serve(build_app(node), bind, shutdown_trigger=stop.wait)
