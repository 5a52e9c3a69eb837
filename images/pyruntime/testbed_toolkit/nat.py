"""Connection and NAT helpers shared by the reference node and the relay: whether a connection is
relayed (from its own transport), the remote address of a connection, the Logos-era `connections`
of /debug/info, and an AutoNAT v1 server that really dials back.

py-libp2p's AutoNAT server has one defect, worked around here (DialBackAutoNAT).
"""

from __future__ import annotations

import logging

import trio
from libp2p.abc import IHost, INetConn
from libp2p.connection_types import ConnectionType
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from testbed_toolkit.p2p import live_connections, own_transport

log = logging.getLogger("codex.nat")
DIAL_BACK_TIMEOUT_S = 5


def is_relayed(conn: INetConn) -> bool:
    """Whether a connection runs over a circuit, from its own transport (never from the
    peerstore: see p2p.TransportInfo)."""
    try:
        return own_transport(conn)[1] is ConnectionType.RELAYED
    except Exception:  # a connection closing under us
        return True


def has_direct(conns: list[INetConn]) -> bool:
    return any(not is_relayed(c) for c in conns)


def remote_address(conn: INetConn) -> str | None:
    remote = conn.muxed_conn.get_remote_address() if hasattr(conn, "muxed_conn") else None
    return f"{remote[0]}:{remote[1]}" if remote else None


def peer_connections(host: IHost) -> list[dict]:
    """The Logos-era `connections` of /debug/info: every connected peer; `direct` is false while
    the only paths to it are relayed (circuit) ones."""
    return [
        {"peerId": peer.to_base58(), "direct": has_direct(conns)}
        for peer, conns in live_connections(host).items()
    ]


class DialBackAutoNAT(AutoNATService):
    """AutoNAT v1 server that really dials back.

    py-libp2p 0.8.1 dials back with `host.connect`, which returns at once when any connection to
    the peer exists — and the request itself arrived on one, so every requester is told it is
    reachable. This server opens a new connection to the requested address (bounded), then closes
    it again.
    """

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        network = self.host.get_network()
        for raw in addrs:
            with trio.move_on_after(DIAL_BACK_TIMEOUT_S):
                try:
                    conn = await network.dial_addr(Multiaddr(raw), peer_id)
                except Exception as exc:
                    log.debug("dial-back %s at %s failed: %s", peer_id, Multiaddr(raw), exc)
                    continue
                with trio.move_on_after(1):
                    await conn.close()
                return bytes(raw)
        return None
