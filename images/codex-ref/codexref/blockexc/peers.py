"""Per-peer state and wire plumbing: what a peer has and wants, and one coalescing sender.

Each side sends on its own outbound stream and reads every inbound stream (no request/response
correlation, as upstream). Wants and presences queued for a peer are coalesced into one message;
block deliveries go at most `max_blocks_per_message` per message, FIFO.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from libp2p.peer.id import ID
from testbed_toolkit.blockexc.messages import (
    BlockAddress,
    BlockDelivery,
    BlockPresence,
    Message,
    WantEntry,
    Wantlist,
)

MAX_ENTRIES_PER_MESSAGE = 1024


@dataclass(eq=False)
class PeerContext:
    peer_id: ID
    have: set[BlockAddress] = field(default_factory=set)
    dont_have: set[BlockAddress] = field(default_factory=set)
    outstanding: set[BlockAddress] = field(default_factory=set)  # our wantBlocks in flight to them
    requested: set[BlockAddress] = field(default_factory=set)  # + timed-out ones: cancelled on delivery
    asked_at: dict[BlockAddress, float] = field(default_factory=dict)  # when we last sent them a want
    wants_from_them: dict[BlockAddress, WantEntry] = field(default_factory=dict)  # not local yet
    successes: int = 0
    failures: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    # outbox
    out_wants: list[WantEntry] = field(default_factory=list)
    out_full: bool = False
    out_presences: list[BlockPresence] = field(default_factory=list)
    serve_queue: deque[BlockAddress] = field(default_factory=deque)
    serving: set[BlockAddress] = field(default_factory=set)
    wake: trio.Event = field(default_factory=trio.Event)

    @property
    def failure_rate(self) -> float:
        total = self.successes + self.failures
        return self.failures / total if total else 0.0

    def penalty(self) -> float:
        """Upstream's selection penalty: 2 x outstanding + 5 x failure rate."""
        return 2 * len(self.outstanding) + 5 * self.failure_rate

    def queue_wants(self, entries: list[WantEntry], full: bool = False) -> None:
        now = time.monotonic()
        for entry in entries:
            if not entry.cancel:
                self.asked_at[entry.address] = now
        self.out_wants.extend(entries)
        self.out_full = self.out_full or full
        self.wake.set()

    def queue_presence(self, presence: BlockPresence) -> None:
        self.out_presences.append(presence)
        self.wake.set()

    def queue_delivery(self, address: BlockAddress) -> None:
        if address not in self.serving:
            self.serving.add(address)
            self.serve_queue.append(address)
            self.wake.set()

    def cancel_delivery(self, address: BlockAddress) -> None:
        self.serving.discard(address)  # stale queue entries are skipped when sending

    def has_outbox(self) -> bool:
        return bool(self.out_wants or self.out_presences or self.serving)

    def next_message(self, build_delivery: Callable[[BlockAddress], BlockDelivery | None], max_blocks: int):
        """Take the next message off the outbox (None when empty)."""
        wants = self.out_wants[:MAX_ENTRIES_PER_MESSAGE]
        del self.out_wants[:MAX_ENTRIES_PER_MESSAGE]
        presences = self.out_presences[:MAX_ENTRIES_PER_MESSAGE]
        del self.out_presences[:MAX_ENTRIES_PER_MESSAGE]
        deliveries = []
        while self.serve_queue and len(deliveries) < max_blocks:
            address = self.serve_queue.popleft()
            if address not in self.serving:
                continue
            self.serving.discard(address)
            delivery = build_delivery(address)
            if delivery is not None:
                deliveries.append(delivery)
        if not (wants or presences or deliveries):
            return None
        full, self.out_full = self.out_full, False
        return Message(Wantlist(tuple(wants), full), tuple(deliveries), tuple(presences))
