"""The node's libp2p host: our secp256k1 identity, TCP, Noise, Yamux (preferred) and Mplex.

Identify and ping come with py-libp2p's basic host. Announce addresses follow `--nat=extip:<ip>`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.connection_types import ConnectionType
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import Secp256k1PrivateKey, Secp256k1PublicKey
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from testbed_toolkit.identity import Identity
from testbed_toolkit.protobuf import iter_fields

log = logging.getLogger("codex.p2p")


def build_host(identity: Identity, announce: Sequence[str] | Callable[[], Sequence[str]]) -> IHost:
    """`announce`: the addresses to advertise, or a function that gives them when asked (a node
    listening on port 0 knows its port only once it listens); none advertises the listen ones."""
    current = announce if callable(announce) else lambda: announce
    private = Secp256k1PrivateKey(identity.private_key)
    key_pair = KeyPair(private, Secp256k1PublicKey(identity.private_key.public_key))
    security = {NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)}
    # Upstream Codex speaks Mplex; Yamux is offered first because py-libp2p's Mplex is ~3x slower.
    muxers = {YAMUX_PROTOCOL_ID: Yamux, MPLEX_PROTOCOL_ID: Mplex}
    return new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt=muxers,
        addrs_factory=lambda listening: [multiaddr.Multiaddr(a) for a in current()] or listening,
    )


def live_connections(host: IHost) -> dict[ID, list[INetConn]]:
    """The peers we hold at least one connection to, and those connections."""
    return {peer: conns for peer, conns in host.get_network().connections.items() if conns}


def peer_info(peer_id: str, addrs: list[str]) -> PeerInfo:
    return PeerInfo(ID.from_base58(peer_id), [multiaddr.Multiaddr(a) for a in addrs])


def decode_spr(spr: str) -> tuple[str, list[str]]:
    """Peer id and multiaddrs of a `spr:` record (the signature is not checked here)."""
    payload = spr.removeprefix("spr:")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    record = next(v for n, _, v in iter_fields(raw) if n == 3)
    fields = list(iter_fields(record))  # type: ignore[arg-type]
    peer_id = ID(next(v for n, _, v in fields if n == 1)).to_base58()  # type: ignore[arg-type]
    addrs = []
    for number, _, value in fields:
        if number == 3:
            raw_addr = next(v for n, _, v in iter_fields(value) if n == 1)  # type: ignore[arg-type]
            addrs.append(str(multiaddr.Multiaddr(raw_addr)))
    return peer_id, addrs


class PeerEvents(INotifee):
    """Forwards connection changes to callbacks: `joined` on every new connection (so it must be
    idempotent), `left` when a peer's last connection is gone.

    py-libp2p registers a connection and notifies later, after awaits: two connections opened at
    once (both peers dialling each other) are both registered before either notification runs, so
    a "first connection" test would see two and report no join at all."""

    def __init__(self, host: IHost, joined, left) -> None:
        self.host = host
        self.joined = joined
        self.left = left

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self.joined(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if not network.get_connections(conn.muxed_conn.peer_id):
            self.left(conn.muxed_conn.peer_id)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


def own_transport(conn: INetConn) -> tuple[list[multiaddr.Multiaddr], ConnectionType]:
    """What a connection itself runs over: its transport's addresses and type, from the muxed
    connection (the remote socket address when the transport names none)."""
    muxed = conn.muxed_conn
    try:
        kind = muxed.get_connection_type()
    except Exception:
        kind = ConnectionType.UNKNOWN
    try:
        addresses = list(muxed.get_transport_addresses())
    except Exception:
        addresses = []
    remote = muxed.get_remote_address() if not addresses and hasattr(muxed, "get_remote_address") else None
    if remote:
        addresses = [multiaddr.Multiaddr(f"/ip4/{remote[0]}/tcp/{remote[1]}")]
    if kind is ConnectionType.UNKNOWN:
        relayed = any("/p2p-circuit" in str(a) for a in addresses)
        kind = ConnectionType.RELAYED if relayed else ConnectionType.DIRECT
    return addresses, kind
