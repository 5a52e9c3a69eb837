"""Circuit relay v2 client of the reference node (not an upstream flag: `--relay-info-url`).

Learns the relay's peer id from its /info endpoint (the relay's key is made at its start),
reserves a slot, keeps the reservation refreshed, and reports the `/p2p-circuit` address the node
can be reached at. Dialing a `/p2p-circuit` address goes through the same transport; incoming
relayed connections arrive through the STOP handler the protocol service registers.
"""

from __future__ import annotations

import json
import logging
import urllib.request

import multiaddr as ma
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

log = logging.getLogger("relay-client")
# What this client accepts from relays; the relay's own limits apply on its side.
CLIENT_LIMITS = RelayLimits(duration=24 * 3600, data=1 << 50, max_circuit_conns=64, max_reservations=8)


class RelayClient:
    def __init__(self, host: IHost, info_url: str) -> None:
        self.host = host
        self.info_url = info_url
        self.protocol = CircuitV2Protocol(host, limits=CLIENT_LIMITS, allow_hop=False)
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=RelayRole.STOP | RelayRole.CLIENT, limits=CLIENT_LIMITS)
        )
        self.relay: dict | None = None  # the relay's /info answer
        self.relay_peer: ID | None = None
        self.reserved = False
        self.error = ""

    @property
    def circuit_addresses(self) -> list[str]:
        if not (self.relay and self.reserved):
            return []
        own = self.host.get_id().to_base58()
        return [f"{addr}/p2p/{self.relay['id']}/p2p-circuit/p2p/{own}" for addr in self.relay["addrs"]]

    def status(self) -> dict:
        return {
            "relay": self.relay and self.relay["id"],
            "reserved": self.reserved,
            "circuitAddresses": self.circuit_addresses,
            "limits": self.relay and self.relay.get("limits"),
            "error": self.error,
        }

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.protocol), trio.open_nursery() as nursery:
            task_status.started()
            await self._reserve(nursery)

    async def _reserve(self, nursery: trio.Nursery) -> None:
        """Until the reservation holds: fetch the relay's id, connect, reserve (backing off to 10 s)."""
        delay = 0.5
        while not self.reserved:
            try:
                self.relay = await trio.to_thread.run_sync(self._fetch_info)
                relay_id = self.relay_peer = ID.from_base58(self.relay["id"])
                await self.host.connect(PeerInfo(relay_id, [ma.Multiaddr(a) for a in self.relay["addrs"]]))
                stream = await self.host.new_stream(relay_id, [PROTOCOL_ID])
                self.reserved = await self.transport.reserve(stream, relay_id, nursery)
                self.error = "" if self.reserved else "the relay refused the reservation"
            except Exception as exc:  # the relay may not be up yet: retried, and reported meanwhile
                self.error = f"{type(exc).__name__}: {exc}"
            if not self.reserved:
                log.info("relay reservation not made yet: %s", self.error)
                await trio.sleep(delay)
                delay = min(delay * 2, 10)
        log.info("reserved a slot on relay %s: reachable at %s", self.relay["id"], self.circuit_addresses)

    def _fetch_info(self) -> dict:
        with urllib.request.urlopen(self.info_url, timeout=5) as response:
            return json.loads(response.read())

    async def dial(self, address: str) -> None:
        await self.transport.dial(ma.Multiaddr(address))
