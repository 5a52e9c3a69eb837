"""Kad-DHT messages: the libp2p Kademlia protobuf (`/ipfs/kad/1.0.0`), as nim-libp2p encodes it
(`libp2p/protocols/kademlia/protobuf.nim`): Message{type=1, key=2, record=3, closerPeers=8,
providerPeers=9}, Peer{id=1, addrs=2, connection=3}. Fields we do not use (records, nim's
providerStatus, py-libp2p's senderRecord, both numbered 11) are skipped when decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed_toolkit.protobuf import DecodeError, bytes_field, iter_fields, varint_field

PROTOCOL_ID = "/ipfs/kad/1.0.0"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # nim-libp2p's MaxMsgSize for a kad message

PUT_VALUE, GET_VALUE, ADD_PROVIDER, GET_PROVIDERS, FIND_NODE, PING = range(6)
# nim-libp2p's MessageType names: the `type` label of its kad_* metrics
TYPE_NAMES = {
    PUT_VALUE: "putValue",
    GET_VALUE: "getValue",
    ADD_PROVIDER: "addProvider",
    GET_PROVIDERS: "getProviders",
    FIND_NODE: "findNode",
    PING: "ping",
}


@dataclass(frozen=True)
class Peer:
    id: bytes  # the peer id's bytes (a multihash)
    addrs: tuple[bytes, ...] = ()  # multiaddrs, binary

    def encode(self) -> bytes:
        return bytes_field(1, self.id) + b"".join(bytes_field(2, a) for a in self.addrs)

    @classmethod
    def decode(cls, data: bytes) -> Peer:
        peer_id, addrs = b"", []
        for number, wire_type, value in iter_fields(data):
            if number == 1 and isinstance(value, bytes):
                peer_id = value
            elif number == 2 and isinstance(value, bytes):
                addrs.append(value)
            elif number in (1, 2):
                raise DecodeError(f"peer field {number} has wire type {wire_type}")
        if not peer_id:
            raise DecodeError("peer without an id")
        return cls(peer_id, tuple(addrs))


@dataclass(frozen=True)
class Message:
    type: int
    key: bytes = b""
    closer_peers: tuple[Peer, ...] = ()
    provider_peers: tuple[Peer, ...] = ()

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, str(self.type))

    def encode(self) -> bytes:
        out = varint_field(1, self.type)
        if self.key:
            out += bytes_field(2, self.key)
        out += b"".join(bytes_field(8, p.encode()) for p in self.closer_peers)
        return out + b"".join(bytes_field(9, p.encode()) for p in self.provider_peers)

    @classmethod
    def decode(cls, data: bytes) -> Message:
        # proto3: an absent type is 0 (putValue), which we do not serve
        msg_type, key, closer, providers = PUT_VALUE, b"", [], []
        for number, _, value in iter_fields(bytes(data)):
            if number == 1 and isinstance(value, int):
                msg_type = value
            elif number == 2 and isinstance(value, bytes):
                key = value
            elif number == 8 and isinstance(value, bytes):
                closer.append(Peer.decode(value))
            elif number == 9 and isinstance(value, bytes):
                providers.append(Peer.decode(value))
        return cls(msg_type, key, tuple(closer), tuple(providers))
