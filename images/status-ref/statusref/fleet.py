"""`waku-fleet`: the testbed's stand-in for the Waku fleet status-go connects to. It relays the
chat transport's shared topic (statusref/transport.py) for every peer that dials it, so status
peers that cannot reach each other (behind different NATs) still chat, as they do through
status-go's fleet of public Waku nodes. It reads nothing and stores nothing.

GET /info on STATUS_FLEET_INFO_PORT answers {"id", "addrs"}: how peers learn whom to dial.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import trio
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from testbed_toolkit.serving import hypercorn_config, stop_on_signals

from statusref.transport import ChatTransport

log = logging.getLogger("waku-fleet")
# Every peer in the fleet node's mesh, up to a community-scale test's hundred: with libp2p's
# D_high of 12 it would prune the rest to gossip (IHAVE/IWANT), a heartbeat later each.
FLEET_DEGREE = (100, 1, 200)


async def run(transport: ChatTransport, info_port: int) -> None:
    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"id": transport.host.get_id().to_base58(), "addrs": transport.addresses()})

    stop = trio.Event()
    app = Starlette(routes=[Route("/info", info, methods=["GET"])])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, stop)
        await nursery.start(transport.run, None)
        log.info("waku fleet node %s on %s", transport.host.get_id(), ", ".join(transport.addresses()))
        await serve(app, hypercorn_config(f"0.0.0.0:{info_port}"), shutdown_trigger=stop.wait)
        await transport.close()
        nursery.cancel_scope.cancel()


def main() -> int:
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("libp2p", "multiaddr", "hypercorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = Path(os.environ.get("STATUS_DATA_DIR", "/usr/status-user"))
    data_dir.mkdir(parents=True, exist_ok=True)
    transport = ChatTransport(
        data_dir / "fleet-key",
        int(os.environ.get("STATUS_CHAT_PORT", "30303")),
        os.environ.get("STATUS_ANNOUNCE_IP", "127.0.0.1"),
        degree=FLEET_DEGREE,
    )
    trio.run(run, transport, int(os.environ.get("STATUS_FLEET_INFO_PORT", "8082")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
