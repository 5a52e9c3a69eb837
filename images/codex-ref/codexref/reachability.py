"""Reachability of a node: AutoNAT v1 (asks peers to dial it back, answers their requests), DCUtR
hole punching over relayed connections, and the Logos-era `nat` and `connections` objects of
/debug/info (logos-storage-nim `storage/rest/json.nim`: `NatDebugInfo`, `peerConnections`).

Both protocols are py-libp2p's; the AutoNAT server is testbed_toolkit.nat.DialBackAutoNAT (the relay
runs it too), which works around one server-side defect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from testbed_toolkit.nat import DialBackAutoNAT, has_direct, is_relayed, remote_address

log = logging.getLogger("codex.nat")
QUERY_TIMEOUT_S = 10
# Like Logos' --nat-schedule-interval (2 min) once a verdict exists; sooner while there is none.
RECHECK_INTERVAL_S = 120
FIRST_CHECKS_INTERVAL_S = 3
HOLE_PUNCH_DIAL_TIMEOUT_S = 5
PINGS = 5
REACHABILITY = {None: "Unknown", True: "Reachable", False: "NotReachable"}


class Reachability:
    """Runs DCUtR and the AutoNAT client/server for one host; reports what they found."""

    def __init__(self, host: IHost, own_addresses: Callable[[], list[str]], confirmations: int) -> None:
        self.host = host
        self.own_addresses = own_addresses
        self.confirmations = confirmations
        self.autonat = DialBackAutoNAT(host, serve=True)  # type: ignore[arg-type]
        self.dcutr = DCUtRProtocol(host, dial_timeout=HOLE_PUNCH_DIAL_TIMEOUT_S)
        self.verdicts: dict[ID, bool] = {}  # server -> did it reach us
        self.reachable: bool | None = None
        self.on_change: Callable[[bool], None] | None = None  # a verdict was reached or changed

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.dcutr):
            task_status.started()
            while True:
                await self.check()
                known = self.reachable is not None
                await trio.sleep(RECHECK_INTERVAL_S if known else FIRST_CHECKS_INTERVAL_S)

    async def check(self) -> None:
        """Ask every directly connected peer to dial us back; servers that refuse, or do not speak
        AutoNAT, give no verdict. `confirmations` agreeing verdicts set the reachability."""
        for peer in self.direct_peers():
            verdict = await self._ask(peer)
            if verdict is not None:
                self.verdicts[peer] = verdict
        yes = sum(self.verdicts.values())
        no = len(self.verdicts) - yes
        previous = self.reachable
        if yes >= self.confirmations and yes >= no:
            self.reachable = True
        elif no >= self.confirmations:
            self.reachable = False
        if self.reachable != previous:
            log.info("reachability: %s (%d reached us, %d could not)", REACHABILITY[self.reachable], yes, no)
            if self.on_change is not None and self.reachable is not None:
                self.on_change(self.reachable)

    async def _ask(self, server: ID) -> bool | None:
        if server not in self.direct_peers():
            return None  # gone since the round began: opening a stream would dial it again
        addresses = [Multiaddr(a).to_bytes() for a in self.own_addresses()]
        try:
            status, _ = await self.autonat.query_server(server, addresses, timeout=QUERY_TIMEOUT_S)
        except Exception as exc:  # no AutoNAT there, or it went away
            log.debug("AutoNAT query to %s: %s", server, exc)
            return None
        if status == Message.OK:
            return True
        return False if status == Message.E_DIAL_ERROR else None

    def direct_peers(self) -> list[ID]:
        connections = self.host.get_network().connections
        return [peer for peer, conns in connections.items() if has_direct(conns)]

    def observed_ips(self) -> list[str]:
        """The IPs peers see us at (identify's observed address; behind a NAT, the router's WAN
        address). py-libp2p has no public accessor that trusts a single observer (its threshold
        is 4), hence the private attribute."""
        manager = getattr(self.host, "_observed_addr_manager", None)
        if manager is None:
            return []
        addresses = [a for a in manager.addrs(min_observers=1) if "/p2p-circuit" not in str(a)]
        return sorted({a.value_for_protocol("ip4") for a in addresses if "/ip4/" in str(a)})

    def nat_status(self, relay_running: bool, announced_ips: set[str]) -> dict:
        # "direct": reachable at an address of our own; a NAT that forwards to us is not a port
        # mapping this node made (no UPnP / NAT-PMP here), so it stays "none".
        direct = bool(self.reachable and announced_ips & set(self.observed_ips()))
        return {
            "reachability": REACHABILITY[self.reachable],
            "clientMode": self.reachable is False,
            "relayRunning": relay_running,
            "portMapping": "direct" if direct else "none",
            # testbed extensions: the evidence behind the verdict
            "autonatServers": {peer.to_base58(): ok for peer, ok in self.verdicts.items()},
            "observedIps": self.observed_ips(),
        }

    async def connection(self, peer: ID) -> dict | None:
        """The paths to one peer and the RTT over the path new streams take (direct first): the
        least of PINGS pings on one stream, so stream setup is not counted."""
        conns = self.host.get_network().connections.get(peer)
        if not conns:
            return None
        rtts: list[float] = []
        ping_error = None
        with trio.move_on_after(10) as deadline:
            try:
                stream = await self.host.new_stream(peer, [PING_PROTOCOL_ID])
                try:
                    for _ in range(PINGS):
                        start = time.perf_counter()
                        await perform_ping_roundtrip(stream)
                        rtts.append((time.perf_counter() - start) * 1000)
                finally:
                    await stream.close()
            except Exception as exc:  # the path may be dying: say so, don't fail the request
                ping_error = f"{type(exc).__name__}: {exc}"
        if deadline.cancelled_caught:
            ping_error = "no pong within 10 s"
        rtt_ms = round(min(rtts), 3) if rtts else None
        return {
            "peerId": peer.to_base58(),
            "direct": has_direct(conns),
            "paths": [{"address": remote_address(c), "relayed": is_relayed(c)} for c in conns],
            "rttMs": rtt_ms,
            "pingError": ping_error,
        }
