"""The BlockExchange engine, event-driven, after nim-codex's `codex/blockexchange/engine/engine.nim`
(bd360322).

Our side: every block we need is a `Want`. A want whose block no known peer has is *searching*:
we send wantHave (sendDontHave) to connected peers and retry every 0..`retry_interval` seconds,
spending one of its `block_retries`. When a peer reports presence, the want becomes *ready*; one
scheduler task assigns ready wants to peers that have the block, by weighted random choice
(penalty 2 x outstanding + 5 x failure rate) under a per-peer cap on blocks requested and not
yet delivered, and sends wantBlock.
An assigned want that is not answered within `request_timeout` counts a failure for that peer and
is retried elsewhere. After a delivery, cancels go to the other peers we sent a wantBlock for it.
A peer silent for `peer_activity_timeout` while we wait on it is dropped and disconnected. Whoever
we are connected to is asked; a want no connected peer has also asks `find_providers` (the Logos
era's DHT discovery) for the providers of its dataset's manifest, who are then dialled.

Their side: wantHave is answered with a presence (dontHave only when asked for); wantBlock of a
local block is queued for delivery, of a missing one remembered and served when it arrives;
deliveries carry Merkle proofs that the receiver verifies; at most 20 blocks per message.
On a new connection we send our whole want list (full=true).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from testbed_toolkit import merkle
from testbed_toolkit.blockexc import PROTOCOL_ID
from testbed_toolkit.blockexc.framing import FrameReader
from testbed_toolkit.blockexc.messages import (
    PRESENCE_DONT_HAVE,
    PRESENCE_HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    BlockAddress,
    BlockDelivery,
    BlockPresence,
    Message,
    WantEntry,
)
from testbed_toolkit.cid import BLOCK_CODEC, MANIFEST_CODEC, ROOT_CODEC, Cid, CidError
from testbed_toolkit.protobuf import DecodeError

from codexref.blockexc.peers import PeerContext
from codexref.dataset import trim
from codexref.manifest import Manifest
from codexref.metrics import Metrics
from codexref.store import QuotaNotEnoughError, RepoStore

log = logging.getLogger("codex.blockexc")
STORE_WORKERS = 2
STORE_QUEUE = 8


class RetriesExhaustedError(RuntimeError):
    pass


def _hash_and_write(store: RepoStore, blocks: list[tuple[Cid, bytes | memoryview]]) -> list[bool | None]:
    """Worker thread: write the blocks whose data hashes to their CID. Per block: True written,
    False already stored, None rejected (not written)."""
    matching = [hashlib.sha256(data).digest() == cid.digest for cid, data in blocks]
    accepted = [block for block, ok in zip(blocks, matching, strict=True) if ok]
    written = iter(store.write(accepted))
    return [next(written) if ok else None for ok in matching]


@dataclass(frozen=True)
class EngineConfig:
    block_retries: int = 3000
    retry_interval_s: float = 2.0
    request_timeout_s: float = 30.0
    peer_activity_timeout_s: float = 60.0
    max_inflight_per_peer: int = 128
    max_blocks_per_message: int = 20
    window: int = 1024


@dataclass(eq=False)
class Want:
    address: BlockAddress
    retries: int
    done: trio.Event = field(default_factory=trio.Event)
    peer: PeerContext | None = None  # assigned: wantBlock in flight to this peer
    deadline: float = 0.0
    next_search: float = 0.0
    queued: bool = False  # in the scheduler's ready queue (entries of unqueued wants are skipped)
    storing: bool = False  # delivered; being verified and written
    error: Exception | None = None
    on_done: list[Callable[[], None]] = field(default_factory=list)


class Engine:
    def __init__(self, host: IHost, store: RepoStore, metrics: Metrics, config: EngineConfig) -> None:
        self.host = host
        self.store = store
        self.metrics = metrics
        self.config = config
        self.peers: dict[ID, PeerContext] = {}
        self.wants: dict[BlockAddress, Want] = {}
        self.ready: deque[Want] = deque()
        self.schedule = trio.Event()
        self.complete_trees: dict[bytes, list[list[bytes]]] = {}  # treeCid bytes -> Merkle layers
        self.checked: dict[bytes, merkle.CheckedNodes] = {}  # treeCid bytes -> what proofs showed
        self.fetching: set[bytes] = set()  # trees with a background dataset fetch running
        self.nursery: trio.Nursery | None = None
        # Read loops hand deliveries to store workers, so reading the next message overlaps
        # verifying and writing this one (a full queue slows the readers: backpressure).
        self._payloads_in, self._payloads_out = trio.open_memory_channel[
            tuple[PeerContext, tuple[BlockDelivery, ...]]
        ](STORE_QUEUE)
        self.rng = random.Random()
        # Logos era: look up a manifest's providers (set by the node; None without a DHT)
        self.find_providers: Callable[[Cid], None] | None = None
        self.manifest_of: dict[bytes, Cid] = {}  # treeCid bytes -> its manifest's CID
        host.set_stream_handler(TProtocol(PROTOCOL_ID), self.handle_stream)
        metrics.gauge("pending_block_requests", lambda: len(self.wants))

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._scheduler)
            nursery.start_soon(self._timers)
            for _ in range(STORE_WORKERS):
                nursery.start_soon(self._store_worker)
            task_status.started()

    async def _store_worker(self) -> None:
        async for ctx, payload in self._payloads_out:
            await self._on_deliveries(ctx, payload)

    # -- peers ------------------------------------------------------------------------------------------
    def peer_joined(self, peer_id: ID) -> PeerContext:
        ctx = self.peers.get(peer_id)
        if ctx is None:
            ctx = self.peers[peer_id] = PeerContext(peer_id)
            assert self.nursery is not None
            self.nursery.start_soon(self._sender, ctx)
            wanted = [WantEntry(w.address, WANT_HAVE, send_dont_have=True) for w in self.wants.values()]
            ctx.queue_wants(wanted, full=True)
            self.schedule.set()
        return ctx

    def peer_left(self, peer_id: ID) -> None:
        ctx = self.peers.pop(peer_id, None)
        if ctx is None:
            return
        ctx.wake.set()  # lets its sender notice and end
        for want in self.wants.values():
            if want.peer is ctx:
                self._unassign(want, failed=False)
        for want in self.ready:
            if want.queued and not self._holders(want):
                self._back_to_searching(want)
        self.schedule.set()

    async def _drop_peer(self, ctx: PeerContext, reason: str) -> None:
        log.info("dropping peer %s: %s", ctx.peer_id, reason)
        self.peer_left(ctx.peer_id)
        try:
            await self.host.disconnect(ctx.peer_id)
        except Exception as exc:
            log.debug("disconnect %s failed: %s", ctx.peer_id, exc)

    async def _sender(self, ctx: PeerContext) -> None:
        """Builds the peer's next message (block reads, proofs, encoding) while the writer waits
        on the stream's flow-control window with the previous one."""
        built, to_write = trio.open_memory_channel[tuple[Message, bytes]](1)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ctx, to_write)
                async with built:
                    while ctx.peer_id in self.peers:
                        await ctx.wake.wait()
                        ctx.wake = trio.Event()
                        while ctx.peer_id in self.peers:
                            msg = ctx.next_message(self._delivery_for, self.config.max_blocks_per_message)
                            if msg is None:
                                break
                            await built.send((msg, msg.framed()))
        except Exception as exc:
            if ctx.peer_id in self.peers:
                await self._drop_peer(ctx, f"send failed: {exc!r}")

    async def _writer(
        self, ctx: PeerContext, to_write: trio.MemoryReceiveChannel[tuple[Message, bytes]]
    ) -> None:
        stream: INetStream | None = None
        try:
            async for msg, frame in to_write:
                stream = await self._send(ctx, stream, frame)
                self._count_sent(msg)
        finally:
            if stream is not None:
                with trio.move_on_after(1):
                    await stream.close()

    async def _send(self, ctx: PeerContext, stream: INetStream | None, frame: bytes) -> INetStream:
        """Write one frame; returns the stream used. A stream that died with its connection
        while another connection to the peer remains (a relayed one closed after DCUtR went
        direct) is replaced once, on the connection new streams prefer."""
        if stream is not None:
            try:
                await stream.write(frame)
                return stream
            except Exception:
                if not self.host.get_network().get_connections(ctx.peer_id):
                    raise
                log.info("stream to %s lost with its connection; resending on another", ctx.peer_id)
        stream = await self.host.new_stream(ctx.peer_id, [TProtocol(PROTOCOL_ID)])
        await stream.write(frame)
        return stream

    def _count_sent(self, msg: Message) -> None:
        kinds = {e.want_type for e in msg.wantlist.entries if not e.cancel}
        if WANT_HAVE in kinds:
            self.metrics.inc("want_have_lists_sent")
        if WANT_BLOCK in kinds:
            self.metrics.inc("want_block_lists_sent")
        self.metrics.inc("blocks_sent", len(msg.payload))

    async def handle_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        reader = FrameReader(stream)
        try:
            while (body := await reader.read()) is not None:
                ctx = self.peers.get(peer_id) or self.peer_joined(peer_id)
                ctx.last_activity = time.monotonic()
                await self.handle_message(ctx, Message.decode(body))
        except (DecodeError, CidError) as exc:
            log.warning("malformed message from %s: %s", peer_id, exc)
        except Exception as exc:
            log.debug("inbound stream from %s ended: %r", peer_id, exc)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    # -- their messages ---------------------------------------------------------------------------------
    async def handle_message(self, ctx: PeerContext, msg: Message) -> None:
        kinds = {e.want_type for e in msg.wantlist.entries if not e.cancel}
        if WANT_HAVE in kinds:
            self.metrics.inc("want_have_lists_received")
        if WANT_BLOCK in kinds:
            self.metrics.inc("want_block_lists_received")
        for entry in msg.wantlist.entries:
            self._on_want(ctx, entry)
        for presence in msg.block_presences:
            self._on_presence(ctx, presence)
        if msg.payload:
            # Delivered blocks are no longer in flight: the peer gets its next wantBlocks while
            # these are checked and written (A/B, 18 downloads each: median 107.5 vs 100 MB/s).
            for delivery in msg.payload:
                ctx.outstanding.discard(delivery.address)
            self.schedule.set()
            await self._payloads_in.send((ctx, msg.payload))

    def _on_want(self, ctx: PeerContext, entry: WantEntry) -> None:
        address = entry.address
        if entry.cancel:
            ctx.wants_from_them.pop(address, None)
            ctx.cancel_delivery(address)
            return
        local = self.has(address)
        if entry.want_type == WANT_BLOCK and local:
            ctx.queue_delivery(address)
        elif entry.want_type == WANT_HAVE and local:
            ctx.queue_presence(BlockPresence(address, PRESENCE_HAVE))
        else:
            ctx.wants_from_them[address] = entry  # answered when the block arrives here
            if entry.send_dont_have:
                ctx.queue_presence(BlockPresence(address, PRESENCE_DONT_HAVE))

    def _on_presence(self, ctx: PeerContext, presence: BlockPresence) -> None:
        address = presence.address
        want = self.wants.get(address)
        if presence.type == PRESENCE_HAVE:
            ctx.have.add(address)
            ctx.dont_have.discard(address)
            if want is not None and want.peer is None:
                self._make_ready(want)
        else:
            ctx.have.discard(address)
            ctx.dont_have.add(address)
            if want is not None and want.peer is ctx:
                self._unassign(want, failed=False)
            elif want is not None and want.queued and not self._holders(want):
                self._back_to_searching(want)

    async def _on_deliveries(self, ctx: PeerContext, deliveries: tuple[BlockDelivery, ...]) -> None:
        """Check the message's new blocks (CIDs, Merkle proofs), then hash and write them in one
        worker-thread call (hashing and disk I/O must not stall the event loop that keeps
        requests flowing; one hand-off per message, as each costs thread wake-ups and GIL
        switches), then complete the wants of those that were sound."""
        fresh: list[tuple[BlockDelivery, Want]] = []
        for delivery in deliveries:
            want = self.wants.get(delivery.address)
            if want is None or want.storing:
                duplicate = want is not None or self.has(delivery.address)
                self.metrics.inc("duplicate_blocks_received" if duplicate else "spurious_blocks_received")
                continue
            want.storing = True  # the same block from another peer meanwhile is a duplicate
            fresh.append((delivery, want))
        if not fresh:
            return
        checked: list[tuple[BlockDelivery, Want]] = []
        cids: list[Cid] = []
        for delivery, want in fresh:
            verdict = self._verify(delivery)
            if isinstance(verdict, str):
                self._reject(ctx, want, verdict)
            else:
                checked.append((delivery, want))
                cids.append(verdict)
        if not checked:
            return
        blocks = [(cid, d.data) for cid, (d, _) in zip(cids, checked, strict=True)]
        try:
            reservation = self.store.reserve(blocks)
        except QuotaNotEnoughError as exc:
            for _, want in checked:
                want.storing = False
                want.error = exc
                self._finish(want)
            return
        written = await trio.to_thread.run_sync(_hash_and_write, self.store, blocks)
        self.store.commit(reservation, [flag is True for flag in written])
        accepted: list[tuple[BlockDelivery, Want, Cid]] = []
        for (delivery, want), cid, flag in zip(checked, cids, written, strict=True):
            if flag is None:
                self._reject(ctx, want, "data does not hash to its cid")
            else:
                accepted.append((delivery, want, cid))
        self._index([d for d, _, _ in accepted], [cid for _, _, cid in accepted])
        self.metrics.inc("blocks_received", len(accepted))
        ctx.successes += len(accepted)
        for delivery, want, _ in accepted:
            ctx.have.add(delivery.address)
            self._complete(want, deliverer=ctx)
            self._announce_new_block(delivery.address)

    def _reject(self, ctx: PeerContext, want: Want, problem: str) -> None:
        """A bad block counts against its sender; the want stays with it until the request
        times out, then goes elsewhere."""
        log.warning("rejected block from %s: %s", ctx.peer_id, problem)
        ctx.failures += 1
        want.storing = False

    def _verify(self, delivery: BlockDelivery) -> Cid | str:
        """The block's CID if the delivery is acceptable, else why not. The proof is checked
        against the digest the CID claims; that the data hashes to it is checked when written."""
        try:
            cid = Cid.from_bytes(delivery.cid)
        except CidError:
            return "bad block cid"
        address = delivery.address
        if not address.leaf:
            if address.cid != delivery.cid:
                return "cid differs from the requested one"
            if cid.codec == MANIFEST_CODEC:
                try:
                    Manifest.decode(delivery.data)
                except DecodeError as exc:
                    return str(exc)
            return cid
        if cid.codec != BLOCK_CODEC:
            return "leaf block with a non-block codec"
        nodes = self.checked.get(address.tree_cid)
        if nodes is not None and nodes.leaf(address.index) == cid.digest:
            return cid  # an earlier proof (its neighbour's, usually) showed this leaf
        try:
            tree = Cid.from_bytes(address.tree_cid)
            proof = merkle.Proof.decode(delivery.proof)
        except (CidError, DecodeError):
            return "undecodable tree cid or proof"
        if proof.index != address.index:
            return f"proof is for index {proof.index}, not {address.index}"
        if tree.codec != ROOT_CODEC:
            return "Merkle proof does not verify"
        if nodes is None:
            # The leaf count of the manifest being fetched (its tree is set up first), else the
            # first proof's, as for the tree file.
            nleaves = self.store.leaf_count(tree) or proof.nleaves
            nodes = self.checked[address.tree_cid] = merkle.CheckedNodes(tree.digest, nleaves)
        if not nodes.check(proof, cid.digest):
            return "Merkle proof does not verify"
        return cid

    def _index(self, deliveries: list[BlockDelivery], cids: list[Cid]) -> None:
        """Record where stored blocks belong: their tree leaves (one write per tree), or the
        manifest index."""
        leaves: dict[bytes, dict[int, bytes]] = {}
        for delivery, cid in zip(deliveries, cids, strict=True):
            address = delivery.address
            if address.leaf:
                if address.tree_cid not in leaves:
                    tree = Cid.from_bytes(address.tree_cid)
                    self.store.ensure_tree(tree, self.checked[address.tree_cid].nleaves)
                leaves.setdefault(address.tree_cid, {})[address.index] = cid.digest
            elif cid.codec == MANIFEST_CODEC:
                self.store.index_manifest(cid)
        for tree_cid, digests in leaves.items():
            self.store.put_leaves(Cid.from_bytes(tree_cid), digests)

    def _announce_new_block(self, address: BlockAddress) -> None:
        """Peers that asked us for this block while we lacked it get it (or its presence) now."""
        for ctx in self.peers.values():
            entry = ctx.wants_from_them.pop(address, None)
            if entry is None:
                continue
            if entry.want_type == WANT_BLOCK:
                ctx.queue_delivery(address)
            else:
                ctx.queue_presence(BlockPresence(address, PRESENCE_HAVE))

    # -- serving ----------------------------------------------------------------------------------------
    def has(self, address: BlockAddress) -> bool:
        if address.leaf:
            return self.store.has_leaf(Cid.from_bytes(address.tree_cid), address.index)
        return self.store.has(Cid.from_bytes(address.cid))

    def _delivery_for(self, address: BlockAddress) -> BlockDelivery | None:
        try:
            if not address.leaf:
                cid = Cid.from_bytes(address.cid)
                return BlockDelivery(address.cid, self.store.get(cid), address)
            tree = Cid.from_bytes(address.tree_cid)
            digest = self.store.leaf_digest(tree, address.index)
            if digest is None:
                return None
            cid = Cid(BLOCK_CODEC, digest)  # the leaf's block, found once (block_at would look again)
            data = self.store.get(cid)
            proof = self._proof(tree, address.index)
        except LookupError:
            return None
        if proof is None:
            return None
        return BlockDelivery(cid.to_bytes(), data, address, proof)

    def _proof(self, tree: Cid, index: int) -> bytes | None:
        """From the whole tree once every leaf is here; before that, from the nodes checked
        proofs showed (None for a leaf that no proof showed)."""
        key = tree.to_bytes()
        layers = self.complete_trees.get(key)
        if layers is None:
            leaves = self.store.tree_leaves(tree)
            if any(leaf == bytes(32) for leaf in leaves):
                nodes = self.checked.get(key)
                proof = nodes.prove(index) if nodes is not None else None
                return proof.encode() if proof is not None else None
            layers = self.complete_trees[key] = merkle.layers(leaves)
            self.checked.pop(key, None)
        return merkle.prove(layers, index).encode()

    # -- our wants ----------------------------------------------------------------------------------------
    def want(self, address: BlockAddress) -> Want:
        """The want for a block (created if needed); its `done` fires when the block is local."""
        want = self.wants.get(address)
        if want is not None:
            return want
        want = self.wants[address] = Want(address, retries=self.config.block_retries)
        if self.has(address):
            self._complete(want, deliverer=None)
        elif any(address in ctx.have for ctx in self.peers.values()):
            self._make_ready(want)
        else:
            self._search(want)
        return want

    async def get_block(self, address: BlockAddress) -> None:
        """Wait until the block is local; raises RetriesExhaustedError when it cannot be found."""
        want = self.want(address)
        await want.done.wait()
        if want.error is not None:
            raise want.error

    def _search(self, want: Want) -> None:
        """Ask connected peers whether they have it (refreshing stale knowledge), and the DHT
        who provides its dataset."""
        if self.find_providers is not None and (manifest := self._manifest_for(want.address)):
            self.find_providers(manifest)
        now = time.monotonic()
        entry = WantEntry(want.address, WANT_HAVE, send_dont_have=True)
        for ctx in self.peers.values():
            if now - ctx.asked_at.get(want.address, -1e9) >= self.config.retry_interval_s:
                ctx.queue_wants([entry])
        want.next_search = now + self.rng.uniform(0.05, self.config.retry_interval_s)

    def _manifest_for(self, address: BlockAddress) -> Cid | None:
        if address.leaf:
            return self.manifest_of.get(address.tree_cid)
        cid = Cid.from_bytes(address.cid)
        return cid if cid.codec == MANIFEST_CODEC else None

    def _holders(self, want: Want) -> list[PeerContext]:
        return [c for c in self.peers.values() if want.address in c.have]

    def _make_ready(self, want: Want) -> None:
        if not self._holders(want):
            self._back_to_searching(want)
            return
        if not want.queued:
            want.queued = True
            self.ready.append(want)
        self.schedule.set()

    def _back_to_searching(self, want: Want) -> None:
        """No connected peer has the block (any more): the timers search for it now."""
        want.queued = False
        want.next_search = 0.0

    def _unassign(self, want: Want, failed: bool) -> None:
        ctx = want.peer
        want.peer = None
        if ctx is not None:
            ctx.outstanding.discard(want.address)
            if failed:
                ctx.failures += 1
        if failed:
            want.retries -= 1
        if want.retries <= 0:
            self._fail(want)
            return
        self._make_ready(want)

    def _complete(self, want: Want, deliverer: PeerContext | None) -> None:
        if want.peer is not None:
            want.peer.outstanding.discard(want.address)
            want.peer = None
        cancel = WantEntry(want.address, WANT_BLOCK, cancel=True)
        for ctx in self.peers.values():
            ctx.asked_at.pop(want.address, None)
            if want.address in ctx.requested:  # as upstream: only peers we sent a wantBlock
                ctx.requested.discard(want.address)
                if ctx is not deliverer:
                    ctx.queue_wants([cancel])
        self._finish(want)

    def _fail(self, want: Want) -> None:
        self.metrics.inc("requests_failed")
        want.error = RetriesExhaustedError(f"retries exhausted for {want.address}")
        self._finish(want)

    def _finish(self, want: Want) -> None:
        self.wants.pop(want.address, None)
        want.done.set()
        for callback in want.on_done:
            callback()
        self.schedule.set()

    async def _scheduler(self) -> None:
        while True:
            await self.schedule.wait()
            self.schedule = trio.Event()
            self._assign_ready()

    def _assign_ready(self) -> None:
        """Send ready wants to holders with room, in want order. The pass stops as soon as no
        peer with room holds a ready block: a wake-up per delivered message must not rescan
        a thousand waiting wants."""
        cap = self.config.max_inflight_per_peer
        roomy = [c for c in self.peers.values() if len(c.outstanding) < cap and c.have]
        if not roomy or not self.ready:
            return
        # Typically the first ready want is held by every peer: no set of all ready wants needed.
        free = [c for c in roomy if any(want.address in c.have for want in self.ready)]
        waiting: list[Want] = []  # holders all busy: they keep their place in the queue
        while free and self.ready:
            want = self.ready.popleft()
            if not want.queued or want.done.is_set() or want.peer is not None:
                want.queued = False
                continue
            holders = self._holders(want)
            if not holders:
                self._back_to_searching(want)
                continue
            candidates = [c for c in holders if c in free]
            if not candidates:
                waiting.append(want)
                continue
            want.queued = False
            ctx = self.rng.choices(candidates, weights=[1 / (1 + c.penalty()) for c in candidates])[0]
            want.peer, want.deadline = ctx, time.monotonic() + self.config.request_timeout_s
            ctx.outstanding.add(want.address)
            ctx.requested.add(want.address)
            ctx.queue_wants([WantEntry(want.address, WANT_BLOCK, send_dont_have=True)])
            if len(ctx.outstanding) >= cap:
                free.remove(ctx)
        self.ready.extendleft(reversed(waiting))

    async def _timers(self) -> None:
        while True:
            await trio.sleep(0.25)
            now = time.monotonic()
            for want in list(self.wants.values()):
                if want.done.is_set():
                    continue
                if want.peer is not None:
                    if now > want.deadline:
                        self._unassign(want, failed=True)
                elif not want.queued and now >= want.next_search:
                    want.retries -= 1
                    if want.retries <= 0:
                        self._fail(want)
                    else:
                        self._search(want)
            for ctx in list(self.peers.values()):
                if ctx.outstanding and now - ctx.last_activity > self.config.peer_activity_timeout_s:
                    self.metrics.inc("peer_timeouts")
                    await self._drop_peer(ctx, "peer activity timeout")

    # -- datasets -------------------------------------------------------------------------------------------
    async def fetch_manifest(self, cid: Cid) -> Manifest:
        if cid.codec != MANIFEST_CODEC:
            raise RetriesExhaustedError("not a manifest CID")
        if not self.store.has(cid):
            await self.get_block(BlockAddress.of_cid(cid.to_bytes()))
        return self.store.manifest(cid)

    async def fetch_dataset(self, manifest: Manifest) -> None:
        """Fetch every missing block through a sliding window (refilled at 75 %)."""
        tree = manifest.tree_cid
        self.manifest_of[tree.to_bytes()] = manifest.cid()
        self.store.ensure_tree(tree, manifest.blocks_count)
        progress = trio.Event()
        active: set[Want] = set()
        failure: list[Exception] = []

        def on_done(want: Want) -> Callable[[], None]:
            def callback() -> None:
                active.discard(want)
                if want.error is not None:
                    failure.append(want.error)
                progress.set()

            return callback

        index, tree_bytes = 0, tree.to_bytes()
        while index < manifest.blocks_count or active:
            if failure:
                raise failure[0]
            if len(active) <= self.config.window * 3 // 4:
                while index < manifest.blocks_count and len(active) < self.config.window:
                    if not self.store.has_leaf(tree, index):
                        want = self.want(BlockAddress.of_leaf(tree_bytes, index))
                        if not want.done.is_set():
                            active.add(want)
                            want.on_done.append(on_done(want))
                    index += 1
            if active:
                await progress.wait()
                progress = trio.Event()
        self.checked.pop(tree_bytes, None)  # every leaf is here: proofs come from the whole tree

    def start_fetch(self, manifest: Manifest) -> None:
        """Download a dataset in the background (once per tree at a time)."""
        key = manifest.tree_cid.to_bytes()
        if key in self.fetching:
            return
        self.fetching.add(key)

        async def run() -> None:
            try:
                await self.fetch_dataset(manifest)
            except RetriesExhaustedError as exc:
                log.warning("background fetch of %s stopped: %s", manifest.tree_cid, exc)
            finally:
                self.fetching.discard(key)

        assert self.nursery is not None
        self.nursery.start_soon(run)

    async def stream(self, manifest: Manifest) -> AsyncIterator[bytes]:
        """The dataset in order; from the first missing block on, a background prefetch runs."""
        tree = manifest.tree_cid
        self.manifest_of[tree.to_bytes()] = manifest.cid()
        for index in range(manifest.blocks_count):
            if not self.store.has_leaf(tree, index):
                self.start_fetch(manifest)
                await self.get_block(BlockAddress.of_leaf(tree.to_bytes(), index))
            yield trim(manifest, index, self.store.block_at(tree, index))
