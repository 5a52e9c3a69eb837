"""Kad-DHT over the node's libp2p switch, as the Logos-era node runs it since August 2026
(logos-storage-nim `storage/discovery.nim` mounts nim-libp2p's `KadDHT` with its defaults:
`/ipfs/kad/1.0.0`, k = 20, alpha = 10).

Server mode answers FIND_NODE, GET_PROVIDERS, ADD_PROVIDER (no reply, as nim) and PING; client
mode resets inbound DHT streams (nim keeps the protocol mounted and refuses in its handler).
A peer enters the routing table once it answered us as a server: a new connection is probed
with a FIND_NODE for our own id, as nim admits peers; one that fails three RPCs in a row leaves
it. Our requests to a peer share one stream, as nim's do, and at most 100 are in flight.
Lookups are iterative: the alpha closest unqueried of the k closest known, until the k closest
have all answered or failed. Providing is a lookup for the key, then ADD_PROVIDER to the k
closest. Every message is counted in nim-libp2p's `kad_*` metrics, by type, both directions.

py-libp2p's own `kad_dht` is not used: it waits for an ADD_PROVIDER reply nim never sends,
refuses keys that are not CIDs (nim's keys are multihashes), answers one request per stream,
and its lookups have no per-request deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable

import trio
from codexref.dht.messages import (
    ADD_PROVIDER,
    FIND_NODE,
    GET_PROVIDERS,
    MAX_MESSAGE_BYTES,
    PING,
    PROTOCOL_ID,
    Message,
    Peer,
)
from codexref.dht.routing import BUCKET_SIZE, ProviderStore, RoutingTable, point
from codexref.metrics import Metrics
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from testbed_toolkit.blockexc.framing import FrameReader
from testbed_toolkit.p2p import live_connections
from testbed_toolkit.protobuf import DecodeError, encode_varint

log = logging.getLogger("codex.dht")
ALPHA = 10
RPC_TIMEOUT_S = 10
MIN_TABLE_PEERS = 10  # below this, nim re-seeds its table every minute
RESEED_INTERVAL_S = 60
REFRESH_INTERVAL_S = 600  # nim's bucket refresh and provider-record cleanup
PROVIDER_LOOKUP_COUNT = 20  # a provider lookup stops with this many (logos `discovery.nim`)
MAX_CONCURRENT_RPCS = 100  # nim-libp2p's DefaultMaxConcurrentRpcs: outbound RPCs in flight


class KadDHT:
    def __init__(
        self, host: IHost, metrics: Metrics, own_addresses: Callable[[], list[str]], server: bool
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.own_addresses = own_addresses
        self.server = server
        self.own_id = host.get_id().to_bytes()
        self.table = RoutingTable(self.own_id)
        self.providers = ProviderStore()
        self.provided: set[bytes] = set()  # keys we announced ourselves
        self.nursery: trio.Nursery | None = None
        self._first_peer = trio.Event()
        self._unadmitted: set[ID] = set()  # connected peers whose admission probe got no answer
        self._admitting: set[ID] = set()  # admission probes in flight (one per peer)
        self._streams: dict[ID, tuple[INetStream, FrameReader]] = {}  # our requests' streams
        self._peer_locks: defaultdict[ID, trio.Lock] = defaultdict(trio.Lock)
        self._rpc_slots = trio.CapacityLimiter(MAX_CONCURRENT_RPCS)
        metrics.enable_kad()
        metrics.gauge("kad_routing_table_peers", lambda: len(self.table))
        host.set_stream_handler(TProtocol(PROTOCOL_ID), self._handle)

    # -- running --------------------------------------------------------------------------------
    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Admission probes and lookups run here; a self-lookup fills the table once a first peer
        is in it. Every minute while it holds fewer than MIN_TABLE_PEERS, the table is re-seeded:
        connected peers whose admission probe failed are probed again (on a loaded machine a
        bootstrap node's answer may time out, and nothing else would bring the node in), then a
        self-lookup. Every 10 minutes a lookup of a random id refreshes it and expired provider
        records go."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            while not self._first_peer.is_set():
                with trio.move_on_after(RESEED_INTERVAL_S):
                    await self._first_peer.wait()
                await self._probe_unadmitted()
            await self.lookup(self.own_id, FIND_NODE)
            since_refresh = 0.0
            while True:
                await trio.sleep(RESEED_INTERVAL_S)
                since_refresh += RESEED_INTERVAL_S
                if len(self.table) < MIN_TABLE_PEERS:
                    await self._probe_unadmitted()
                    await self.lookup(self.own_id, FIND_NODE)
                if since_refresh >= REFRESH_INTERVAL_S:
                    since_refresh = 0.0
                    await self.lookup(os.urandom(32), FIND_NODE)
                    self.providers.expire()

    def set_server_mode(self, server: bool) -> None:
        if server != self.server:
            log.info("DHT %s mode", "server" if server else "client")
        self.server = server

    def peer_connected(self, peer: ID) -> None:
        """A new connection: admit the peer if it answers as a DHT server."""
        if self.nursery is not None and peer.to_bytes() not in self.table and peer not in self._admitting:
            self.nursery.start_soon(self._admit, peer)

    async def _admit(self, peer: ID) -> None:
        self._admitting.add(peer)
        try:
            reply = await self._request(peer, Message(FIND_NODE, self.own_id))
        finally:
            self._admitting.discard(peer)
        if reply is None:
            self._unadmitted.add(peer)
            return
        self._unadmitted.discard(peer)
        self.table.insert(peer.to_bytes())
        self._learn(reply.closer_peers)
        self._first_peer.set()

    async def _probe_unadmitted(self) -> None:
        """Probe again the peers whose admission failed and that we are still connected to."""
        connected = live_connections(self.host)
        self._unadmitted &= set(connected)
        for peer in list(self._unadmitted):
            await self._admit(peer)

    # -- the client side --------------------------------------------------------------------------
    async def lookup(
        self, key: bytes, msg_type: int, enough_providers: int = 0
    ) -> tuple[list[bytes], dict[bytes, tuple[bytes, ...]]]:
        """Iterative lookup of `key` with FIND_NODE or GET_PROVIDERS: the k closest peers that
        answered, and the providers they named (stops early with `enough_providers`)."""
        target = point(key)
        distance = {p: point(p) ^ target for p in self.table.closest(target)}
        queried: set[bytes] = set()
        answered: set[bytes] = set()
        providers: dict[bytes, tuple[bytes, ...]] = {}
        while not (enough_providers and len(providers) >= enough_providers):
            closest = sorted(
                (p for p in distance if p not in queried or p in answered), key=distance.__getitem__
            )
            batch = [p for p in closest[:BUCKET_SIZE] if p not in queried][:ALPHA]
            if not batch:
                break
            queried.update(batch)
            for peer, reply in (await self._ask_all(batch, Message(msg_type, key))).items():
                if reply is None:
                    continue
                answered.add(peer)
                self.table.insert(peer)
                for learned in self._learn(reply.closer_peers):
                    distance.setdefault(learned, point(learned) ^ target)
                providers.update((p.id, p.addrs) for p in reply.provider_peers)
        return sorted(answered, key=distance.__getitem__)[:BUCKET_SIZE], providers

    async def provide(self, key: bytes) -> int:
        """Announce ourselves as a provider of `key` to the k peers closest to it; returns how
        many took the record."""
        self.provided.add(key)
        closest, _ = await self.lookup(key, FIND_NODE)
        record = Message(ADD_PROVIDER, key, provider_peers=(self._own_peer(),))
        sent: list[bool] = []

        async def send(peer: bytes) -> None:
            sent.append(await self._send(ID(peer), record))

        async with trio.open_nursery() as nursery:
            for peer in closest:
                nursery.start_soon(send, peer)
        return sum(sent)

    async def find_providers(
        self, key: bytes, count: int = PROVIDER_LOOKUP_COUNT
    ) -> dict[bytes, tuple[bytes, ...]]:
        """Providers of `key` (peer id bytes -> multiaddrs), ourselves excluded."""
        found = self.providers.get(key)
        if len(found) < count:
            _, more = await self.lookup(key, GET_PROVIDERS, enough_providers=count)
            found.update(more)
        found.pop(self.own_id, None)
        return found

    async def find_peer(self, peer: ID) -> list[str]:
        """A peer's addresses: from the peer store, else from a lookup of its id (the peers
        closest to it name it, with its addresses, if it is in the network)."""
        if not self._addresses_of(peer):
            await self.lookup(peer.to_bytes(), FIND_NODE)
        return self._addresses_text(peer)

    def _addresses_text(self, peer: ID) -> list[str]:
        """The peer's known addresses as text, without the `/p2p/<its id>` identify may append."""
        suffix = f"/p2p/{peer.to_base58()}"
        return [str(a).removesuffix(suffix) for a in decodable_multiaddrs(self._addresses_of(peer))]

    async def _ask_all(self, peers: list[bytes], msg: Message) -> dict[bytes, Message | None]:
        replies: dict[bytes, Message | None] = {}

        async def ask(peer: bytes) -> None:
            replies[peer] = await self._request(ID(peer), msg)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
        return replies

    async def _request(self, peer: ID, msg: Message) -> Message | None:
        """One RPC with its reply; None when the peer did not answer in time."""
        reply = await self._rpc(peer, msg, expect_reply=True)
        if reply is None:
            self.table.failed(peer.to_bytes())
        return reply

    async def _send(self, peer: ID, msg: Message) -> bool:
        """A message that gets no reply (ADD_PROVIDER): True once written."""
        return await self._rpc(peer, msg, expect_reply=False) is not False

    async def _rpc(self, peer: ID, msg: Message, expect_reply: bool) -> Message | bool | None:
        """`msg` on the peer's stream (one per peer, reused as nim does; opened once more if the
        old one died), one RPC at a time per peer and MAX_CONCURRENT_RPCS in all. The reply, or
        True when none is expected; None or False when the peer failed us."""
        failed: Message | bool | None = None if expect_reply else False
        with trio.move_on_after(RPC_TIMEOUT_S):
            async with self._rpc_slots, self._peer_locks[peer]:
                for attempt in range(2):
                    reused = peer in self._streams
                    try:
                        return await self._exchange(peer, msg, expect_reply)
                    except BaseException as exc:  # a timeout too: a reply may still be on its way
                        self._drop_stream(peer)
                        if not isinstance(exc, Exception):
                            raise
                        log.debug(
                            "kad %s to %s failed (attempt %d): %r", msg.type_name, peer, attempt + 1, exc
                        )
                        if not reused:
                            break
        return failed

    async def _exchange(self, peer: ID, msg: Message, expect_reply: bool) -> Message | bool:
        if peer not in self._streams:
            stream = await self.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
            self._streams[peer] = (stream, FrameReader(stream, MAX_MESSAGE_BYTES))
        stream, reader = self._streams[peer]
        await self._write(stream, msg)
        if not expect_reply:
            return True
        body = await reader.read()
        if body is None:
            raise EOFError("the stream ended before the reply")
        self.metrics.count_kad("received", msg.type_name, len(body))
        return Message.decode(body)

    def _drop_stream(self, peer: ID) -> None:
        entry = self._streams.pop(peer, None)
        if entry is not None and self.nursery is not None:
            self.nursery.start_soon(_close, entry[0])

    async def _write(self, stream: INetStream, msg: Message) -> None:
        body = msg.encode()
        await stream.write(encode_varint(len(body)) + body)
        self.metrics.count_kad("sent", msg.type_name, len(body))

    def _learn(self, peers: tuple[Peer, ...]) -> list[bytes]:
        """Keep the dialable addresses of peers a reply named; returns their ids."""
        learned = []
        for peer in peers:
            if peer.id == self.own_id:
                continue
            addrs = [m for m in decodable_multiaddrs(peer.addrs) if "/p2p-circuit" not in str(m)]
            if addrs:
                self.host.get_peerstore().add_addrs(ID(peer.id), addrs, 0)
                learned.append(peer.id)
        return learned

    # -- the server side --------------------------------------------------------------------------
    async def _handle(self, stream: INetStream) -> None:
        """Requests on one stream until it ends (nim reuses a stream for many)."""
        if not self.server:
            await stream.reset()
            return
        peer = stream.muxed_conn.peer_id
        reader = FrameReader(stream, MAX_MESSAGE_BYTES)
        try:
            while (body := await reader.read()) is not None:
                msg = Message.decode(body)
                self.metrics.count_kad("received", msg.type_name, len(body))
                reply = self._answer(peer, msg)
                if reply is not None:
                    await self._write(stream, reply)
        except DecodeError as exc:
            log.warning("malformed kad message from %s: %s", peer, exc)
        except Exception as exc:
            log.debug("kad stream from %s ended: %r", peer, exc)
        finally:
            await _close(stream)

    def _answer(self, peer: ID, msg: Message) -> Message | None:
        if msg.type == FIND_NODE:
            return Message(FIND_NODE, msg.key, closer_peers=self._closer(msg.key, peer))
        if msg.type == GET_PROVIDERS:
            found = [Peer(p, addrs) for p, addrs in self.providers.get(msg.key).items()]
            if msg.key in self.provided:
                found.append(self._own_peer())
            return Message(GET_PROVIDERS, msg.key, self._closer(msg.key, peer), tuple(found))
        if msg.type == ADD_PROVIDER:
            # a record counts only for the peer that sent it (the spec's rule against forgery)
            for provider in msg.provider_peers:
                if provider.id == peer.to_bytes():
                    self.providers.add(msg.key, provider.id, provider.addrs)
            return None
        if msg.type == PING:
            return msg
        return None  # values (PUT_VALUE / GET_VALUE) are not served, as by the storage node

    def _closer(self, key: bytes, requester: ID) -> tuple[Peer, ...]:
        closest = [p for p in self.table.closest(point(key), BUCKET_SIZE + 1) if p != requester.to_bytes()]
        return tuple(Peer(p, self._addresses_of(ID(p))) for p in closest[:BUCKET_SIZE])

    def _addresses_of(self, peer: ID) -> tuple[bytes, ...]:
        try:
            return tuple(a.to_bytes() for a in self.host.get_peerstore().addrs(peer))
        except Exception:  # py-libp2p's PeerStoreError: none known, or expired
            return ()

    def _own_peer(self) -> Peer:
        return Peer(self.own_id, tuple(Multiaddr(a).to_bytes() for a in self.own_addresses()))

    # -- /debug/info ------------------------------------------------------------------------------
    def table_nodes(self) -> list[dict]:
        return [
            {
                "peerId": ID(e.peer_id).to_base58(),
                "addresses": self._addresses_text(ID(e.peer_id)),
                "lastSeen": int(e.last_seen),
            }
            for e in self.table.entries()
        ]


def decodable_multiaddrs(raw: tuple[bytes, ...]) -> list[Multiaddr]:
    """The addresses py-multiaddr can decode; the others are skipped."""
    out = []
    for addr in raw:
        try:
            out.append(Multiaddr(addr))
        except Exception:  # a protocol py-multiaddr does not know: not dialable by us anyway
            continue
    return out


async def _close(stream: INetStream) -> None:
    with trio.move_on_after(1), contextlib.suppress(Exception):
        await stream.close()
