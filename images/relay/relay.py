"""Circuit relay v2 (hop) for the testbed, on py-libp2p, with go/nim default limits or none.

Profiles (RELAY_PROFILE): `default` = go-libp2p's and nim-libp2p's defaults (reservation 1 h,
circuit 120 s / 128 KiB); `unlimited` = no practical limit. RELAY_RESERVATION_TTL_S,
RELAY_CIRCUIT_DURATION_S and RELAY_CIRCUIT_BYTES override single values (docs/nat.md, "Circuit
relay v2").
GET http://<relay>:8082/info answers {"id", "addrs", "limits", "peers"}: how nodes learn the
relay's peer id (its key is created at start), the healthcheck, and the relay's view of whom it
sees from which address.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import multiaddr
import trio
from hypercorn.trio import serve
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.tools.anyio_service import background_trio_service
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from testbed_toolkit import identity, p2p
from testbed_toolkit.nat import DialBackAutoNAT, remote_address
from testbed_toolkit.serving import hypercorn_config, stop_on_signals

log = logging.getLogger("relay")
INFO_PORT = 8082
PROFILES = {
    "default": {"reservation_ttl": 3600, "duration": 120, "data": 128 * 1024},
    "unlimited": {"reservation_ttl": 24 * 3600, "duration": 24 * 3600, "data": 1 << 50},
}


def limits_from_env() -> RelayLimits:
    profile = os.environ.get("RELAY_PROFILE", "default")
    if profile not in PROFILES:
        sys.exit(f"RELAY_PROFILE={profile!r}: one of {', '.join(PROFILES)}")
    values = dict(PROFILES[profile])
    for env, key in (
        ("RELAY_RESERVATION_TTL_S", "reservation_ttl"),
        ("RELAY_CIRCUIT_DURATION_S", "duration"),
        ("RELAY_CIRCUIT_BYTES", "data"),
    ):
        if env in os.environ:
            values[key] = int(os.environ[env])
    return RelayLimits(max_circuit_conns=64, max_reservations=128, **values)


async def main() -> None:
    listen_port = int(os.environ.get("RELAY_LISTEN_PORT", "4001"))
    announce_ip = os.environ["RELAY_ANNOUNCE_IP"]
    limits = limits_from_env()
    key_file = Path(tempfile.mkdtemp()) / "key"
    host = p2p.build_host(identity.load_or_create(key_file), [f"/ip4/{announce_ip}/tcp/{listen_port}"])
    hop = CircuitV2Protocol(host, limits=limits, allow_hop=True)
    DialBackAutoNAT(host, serve=True)  # answers the nodes' reachability questions, as go relays do
    info = {
        "id": host.get_id().to_base58(),
        "addrs": [f"/ip4/{announce_ip}/tcp/{listen_port}"],
        "limits": {
            "reservation_ttl_s": limits.reservation_ttl,
            "duration_s": limits.duration,
            "data_bytes": limits.data,
        },
    }

    def peers() -> list[dict]:
        """Who is connected, and from which address the relay sees them (its reflexive view)."""
        out = []
        for peer, conns in host.get_network().connections.items():
            for conn in conns if isinstance(conns, list) else [conns]:
                out.append({"id": peer.to_base58(), "address": remote_address(conn)})
        return out

    app = Starlette(routes=[Route("/info", lambda request: JSONResponse({**info, "peers": peers()}))])
    stop = trio.Event()
    listen = [multiaddr.Multiaddr(f"/ip4/0.0.0.0/tcp/{listen_port}")]
    async with host.run(listen_addrs=listen), background_trio_service(hop), trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, stop)
        log.info(
            "circuit relay v2 %s on %s, limits %s", info["id"], info["addrs"][0], json.dumps(info["limits"])
        )
        bind = f"0.0.0.0:{INFO_PORT}"
        await serve(app, hypercorn_config(bind, graceful_timeout_s=1), shutdown_trigger=stop.wait)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("hypercorn").setLevel(logging.WARNING)
    trio.run(main)
