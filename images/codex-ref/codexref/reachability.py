"""Reachability of a node: AutoNAT v1 (asks peers to dial it back, answers their requests), DCUtR
hole punching over relayed connections, and the Logos-era `nat` and `connections` objects of
/debug/info (logos-storage-nim `storage/rest/json.nim`: `NatDebugInfo`, `peerConnections`).

Both protocols are py-libp2p's; the AutoNAT server is testbed_toolkit.nat.DialBackAutoNAT (the relay
runs it too), which works around one server-side defect.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID
from libp2p.rcmgr.metrics import Direction
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from testbed_toolkit.nat import DialBackAutoNAT, has_direct, is_relayed, remote_address

from codexref.config import AutonatSettings

log = logging.getLogger("codex.nat")
QUERY_TIMEOUT_S = 10
# While there is no verdict a round runs every 3 s: nim-libp2p verifies again whenever a peer is
# identified in the Unknown state; the first rounds find no peer to ask.
UNKNOWN_RETRY_S = 3
HOLE_PUNCH_DIAL_TIMEOUT_S = 5
PINGS = 5
REACHABILITY = {None: "Unknown", True: "Reachable", False: "NotReachable"}


def autonat_servers(connections: Mapping[ID, list[INetConn]]) -> list[ID]:
    """Whom an AutoNAT round may ask: peers we dialled directly that never dialled us (nim-libp2p:
    a peer which dialled us has a path to us already, so its answer proves nothing)."""
    return [
        peer
        for peer, conns in connections.items()
        if has_direct(conns) and all(c.direction is Direction.OUTBOUND for c in conns if not is_relayed(c))
    ]


class Reachability:
    """Runs DCUtR for one host, the AutoNAT server if `serve` and the AutoNAT client if `client`;
    reports what they found."""

    def __init__(
        self,
        host: IHost,
        own_addresses: Callable[[], list[str]],
        settings: AutonatSettings,
        client: bool,
        serve: bool,
    ) -> None:
        self.host = host
        self.own_addresses = own_addresses
        self.settings = settings
        self.client = client
        self.autonat = DialBackAutoNAT(host, serve=serve)  # type: ignore[arg-type]
        self.dcutr = DCUtRProtocol(host, dial_timeout=HOLE_PUNCH_DIAL_TIMEOUT_S)
        self.verdicts: dict[ID, bool] = {}  # server -> did it reach us, its latest answer
        self.answers: deque[bool] = deque(maxlen=settings.max_queue_size)
        self.reachable: bool | None = None
        self.on_change: Callable[[bool], None] | None = None  # a verdict was reached or changed
        self.rng = random.Random()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.dcutr):
            task_status.started()
            if not self.client:
                await trio.sleep_forever()
            while True:
                await self.check()
                known = self.reachable is not None
                await trio.sleep(self.settings.schedule_interval_s if known else UNKNOWN_RETRY_S)

    async def check(self) -> None:
        """One round, as nim-libp2p's AutonatService: ask servers in random order until
        `peers_to_ask` of them answered (one refusing, or not speaking AutoNAT, gives no answer)."""
        servers = self.servers()
        self.rng.shuffle(servers)
        answered = 0
        for server in servers:
            if answered >= self.settings.peers_to_ask:
                break
            verdict = await self._ask(server)
            if verdict is not None:
                answered += 1
                self.verdicts[server] = verdict
                self._weigh(verdict)

    def _weigh(self, answer: bool) -> None:
        """Queue the answer; the verdict is the first of reachable, not reachable whose share of
        the whole queue (its size, not its fill) reaches the confidence, else unknown."""
        self.answers.append(answer)
        previous = self.reachable
        size = self.settings.max_queue_size
        self.reachable = next(
            (v for v in (True, False) if self.answers.count(v) / size >= self.settings.min_confidence), None
        )
        if self.reachable != previous:
            yes = self.answers.count(True)
            log.info(
                "reachability: %s (%d of the last %d answers reached us)",
                REACHABILITY[self.reachable],
                yes,
                len(self.answers),
            )
            if self.on_change is not None and self.reachable is not None:
                self.on_change(self.reachable)

    async def _ask(self, server: ID) -> bool | None:
        if server not in self.servers():
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

    def servers(self) -> list[ID]:
        return autonat_servers(self.host.get_network().connections)

    def observed_ips(self) -> list[str]:
        """The IPs peers see us at (identify's observed address; behind a NAT, the router's WAN
        address). py-libp2p has no public accessor that trusts a single observer (its threshold
        is 4), hence the private attribute."""
        manager = getattr(self.host, "_observed_addr_manager", None)
        if manager is None:
            return []
        addresses = [a for a in manager.addrs(min_observers=1) if "/p2p-circuit" not in str(a)]
        return sorted({a.value_for_protocol("ip4") for a in addresses if "/ip4/" in str(a)})

    def nat_status(self, relay_running: bool, announced_ips: set[str], client_mode: bool) -> dict:
        # "direct": reachable at an address of our own; a NAT that forwards to us is not a port
        # mapping this node made (no UPnP / NAT-PMP here), so it stays "none".
        direct = bool(self.reachable and announced_ips & set(self.observed_ips()))
        return {
            "reachability": REACHABILITY[self.reachable],
            "clientMode": client_mode,
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
