"""The BlockExchange engine against real engines, without libp2p: each engine's outbound stream
to a peer is an in-memory pipe that the other engine's `handle_stream` reads (same frames,
same codec, same stores). Seconds, no docker."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import trio
from codexref.blockexc.engine import Engine, EngineConfig
from codexref.dataset import read_local, store_stream
from codexref.metrics import Metrics
from codexref.store import RepoStore
from libp2p.peer.id import ID
from testbed_toolkit import merkle
from testbed_toolkit.blockexc.messages import WANT_BLOCK, BlockAddress, Message
from testbed_toolkit.cid import Cid
from testbed_toolkit.protobuf import decode_varint

KIB64 = 64 * 1024
Frame = Callable[[bytes], bytes]


class Pipe:
    """One direction of a link: what one engine writes, the other reads (any read size)."""

    def __init__(self, sender: ID, tap: Callable[[bytes], bytes]) -> None:
        self.muxed_conn = SimpleNamespace(peer_id=sender)
        self._in, self._out = trio.open_memory_channel[bytes](math.inf)
        self._buffer = b""
        self._tap = tap

    async def write(self, frame: bytes) -> None:
        await self._in.send(self._tap(frame))

    async def read(self, n: int) -> bytes:
        if not self._buffer:
            try:
                self._buffer = await self._out.receive()
            except trio.EndOfChannel:
                return b""
        chunk, self._buffer = self._buffer[:n], self._buffer[n:]
        return chunk

    async def close(self) -> None:
        await self._in.aclose()


@dataclass(eq=False)
class Peer:
    """An engine on a fake host; `received` keeps every message other engines sent it."""

    engine: Engine
    peer_id: ID
    links: dict[ID, Peer] = field(default_factory=dict)
    received: list[Message] = field(default_factory=list)
    tap: Frame = field(default=lambda frame: frame)  # what the wire does to frames sent to it


class FakeHost:
    def __init__(self, peer_id: ID) -> None:
        self.peer_id, self.peer = peer_id, None
        self.nursery: trio.Nursery | None = None

    def set_stream_handler(self, *_) -> None:
        pass

    def get_network(self) -> SimpleNamespace:
        return SimpleNamespace(get_connections=lambda peer: [peer] if peer in self.peer.links else [])

    async def new_stream(self, peer_id: ID, _protocols) -> Pipe:
        other = self.peer.links[peer_id]

        def deliver(frame: bytes) -> bytes:
            frame = other.tap(frame)
            other.received.append(Message.decode(frame[decode_varint(frame)[1] :]))
            return frame

        pipe = Pipe(self.peer_id, deliver)
        self.nursery.start_soon(other.engine.handle_stream, pipe)
        return pipe

    async def disconnect(self, peer_id: ID) -> None:
        self.peer.links.pop(peer_id, None)


def make_peer(root: Path, name: str, **config) -> Peer:
    peer_id = ID(name.encode())
    host = FakeHost(peer_id)
    engine = Engine(host, RepoStore(root / name, 1 << 30, "fs"), Metrics(), EngineConfig(**config))
    host.peer = Peer(engine, peer_id)
    return host.peer


async def _chunks(data: bytes):
    yield data


async def run_linked(peers: list[Peer], scenario) -> None:
    """Start every engine, connect all pairs (as a libp2p connection would), run the scenario."""
    async with trio.open_nursery() as nursery:
        for peer in peers:
            peer.engine.host.nursery = nursery
            await nursery.start(peer.engine.run)
        for peer in peers:
            for other in peers:
                if other is not peer:
                    peer.links[other.peer_id] = other
                    peer.engine.peer_joined(other.peer_id)
        with trio.fail_after(30):
            await scenario()
        nursery.cancel_scope.cancel()


def test_a_dataset_crosses_between_two_engines_byte_identical(tmp_path: Path) -> None:
    seeder, leecher = make_peer(tmp_path, "seeder"), make_peer(tmp_path, "leecher")
    data = os.urandom(40 * KIB64 + 123)
    cid = trio.run(store_stream, seeder.engine.store, _chunks(data), "f.bin", None)

    async def download() -> None:
        manifest = await leecher.engine.fetch_manifest(cid)
        await leecher.engine.fetch_dataset(manifest)

    trio.run(run_linked, [seeder, leecher], download)
    manifest = leecher.engine.store.manifest(cid)
    assert b"".join(read_local(leecher.engine.store, manifest)) == data
    deliveries = [m for m in leecher.received if m.payload]
    assert sum(len(m.payload) for m in deliveries) == 41 + 1  # every block once, and the manifest
    assert max(len(m.payload) for m in deliveries) <= 20


def test_the_inflight_cap_holds_and_a_peer_without_the_blocks_gets_no_want_block_or_cancel(
    tmp_path: Path,
) -> None:
    seeder, empty = make_peer(tmp_path, "seeder"), make_peer(tmp_path, "empty")
    leecher = make_peer(tmp_path, "leecher", max_inflight_per_peer=4)
    data = os.urandom(30 * KIB64)
    cid = trio.run(store_stream, seeder.engine.store, _chunks(data), None, None)
    most_in_flight = [0]

    async def download() -> None:
        manifest = await leecher.engine.fetch_manifest(cid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leecher.engine.fetch_dataset, manifest)
            while not leecher.engine.store.has_leaf(manifest.tree_cid, manifest.blocks_count - 1):
                ctx = leecher.engine.peers[seeder.peer_id]
                most_in_flight[0] = max(most_in_flight[0], len(ctx.outstanding))
                await trio.sleep(0)

    trio.run(run_linked, [seeder, empty, leecher], download)
    assert 0 < most_in_flight[0] <= 4
    entries = [e for m in empty.received for e in m.wantlist.entries]
    assert entries, "the empty peer was asked whether it has the blocks"
    assert not [e for e in entries if e.cancel or e.want_type == WANT_BLOCK]


def test_a_tampered_block_is_rejected_and_fetched_again(tmp_path: Path) -> None:
    seeder = make_peer(tmp_path, "seeder")
    leecher = make_peer(tmp_path, "leecher", request_timeout_s=0.5)
    data = os.urandom(3 * KIB64)
    cid = trio.run(store_stream, seeder.engine.store, _chunks(data), None, None)
    tampered: list[int] = []

    def flip_first_block(frame: bytes) -> bytes:
        body = frame[decode_varint(frame)[1] :]
        message = Message.decode(body)
        leaves = [d for d in message.payload if d.address.leaf]
        if tampered or not leaves:
            return frame
        tampered.append(leaves[0].address.index)
        bad = leaves[0]._replace(data=bytes(KIB64))
        payload = tuple(bad if d is leaves[0] else d for d in message.payload)
        return Message(message.wantlist, payload, message.block_presences).framed()

    leecher.tap = flip_first_block

    async def download() -> None:
        manifest = await leecher.engine.fetch_manifest(cid)
        await leecher.engine.fetch_dataset(manifest)

    trio.run(run_linked, [seeder, leecher], download)
    assert tampered, "a block was tampered with on the wire"
    assert b"".join(read_local(leecher.engine.store, leecher.engine.store.manifest(cid))) == data
    assert leecher.engine.peers[seeder.peer_id].failures >= 1


def test_a_tree_still_downloading_is_served_with_proofs_of_checked_nodes_and_bad_proofs_fail(
    tmp_path: Path,
) -> None:
    seeder, leecher = make_peer(tmp_path, "seeder"), make_peer(tmp_path, "leecher")
    cid = trio.run(store_stream, seeder.engine.store, _chunks(os.urandom(6 * KIB64)), None, None)
    manifest = seeder.engine.store.manifest(cid)
    tree = manifest.tree_cid
    deliveries = [seeder.engine._delivery_for(BlockAddress.of_leaf(tree.to_bytes(), i)) for i in range(6)]
    leecher.engine.store.ensure_tree(tree, manifest.blocks_count)  # as fetch_dataset does first

    first = leecher.engine._verify(deliveries[0])
    assert isinstance(first, Cid)
    leecher.engine.store.put_leaves(tree, {0: first.digest})
    assert leecher.engine._proof(tree, 1) == deliveries[1].proof, "leaf 1 was its neighbour's sibling"
    assert leecher.engine._proof(tree, 2) is None, "no proof showed leaf 2 yet"

    other = merkle.Proof.decode(deliveries[2].proof)
    forged = other._replace(path=(bytes(32), *other.path[1:])).encode()
    assert leecher.engine._verify(deliveries[2]._replace(proof=forged)) == "Merkle proof does not verify"
    assert leecher.engine._verify(deliveries[3]._replace(data=b"", cid=deliveries[4].cid)) == (
        "Merkle proof does not verify"
    ), "a block claiming another leaf's CID"
    assert isinstance(leecher.engine._verify(deliveries[2]), Cid)
