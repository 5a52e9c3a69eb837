"""The Kademlia routing table and provider store, as nim-libp2p's Kad-DHT keeps them
(`libp2p/protocols/kademlia/{routingtable,providers}.nim`): XOR distance between sha256 of peer
ids and of keys, k-buckets of 20 indexed by the shared prefix length; provider records held 48 h,
at most 20 providers per key, keys of at most 80 bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BUCKET_SIZE = 20  # k
MAX_FAILURES = 3  # RPCs in a row a peer may fail before it leaves the table
PROVIDER_TTL_S = 48 * 3600
MAX_PROVIDERS_PER_KEY = 20
MAX_KEY_BYTES = 80


def point(key: bytes) -> int:
    """Where a peer id or a key sits in the XOR space."""
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


def bucket_index(local: int, other: int) -> int:
    """The length of the prefix the two points share (0..255; 256 for the same point)."""
    return 256 - (local ^ other).bit_length()


@dataclass
class Entry:
    peer_id: bytes
    point: int
    last_seen: float
    failures: int = 0  # RPCs failed since the last answer


class RoutingTable:
    """Peers that answered us as DHT servers. A full bucket keeps its old entries (Kademlia's
    preference for long-lived peers); a peer leaves after MAX_FAILURES failed RPCs in a row
    (one timeout on a busy machine is no reason to forget a peer)."""

    def __init__(self, local_id: bytes, clock: Callable[[], float] = time.time) -> None:
        self.local_id = local_id
        self.local = point(local_id)
        self.clock = clock
        self.buckets: dict[int, dict[bytes, Entry]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    def __contains__(self, peer_id: bytes) -> bool:
        return peer_id in self.buckets.get(bucket_index(self.local, point(peer_id)), {})

    def insert(self, peer_id: bytes) -> bool:
        """Add or refresh a peer; False when its bucket is full (or it is ourselves)."""
        if peer_id == self.local_id:
            return False
        where = point(peer_id)
        bucket = self.buckets.setdefault(bucket_index(self.local, where), {})
        if peer_id in bucket:
            bucket[peer_id].last_seen = self.clock()
            bucket[peer_id].failures = 0
            return True
        if len(bucket) >= BUCKET_SIZE:
            return False
        bucket[peer_id] = Entry(peer_id, where, self.clock())
        return True

    def remove(self, peer_id: bytes) -> None:
        self.buckets.get(bucket_index(self.local, point(peer_id)), {}).pop(peer_id, None)

    def failed(self, peer_id: bytes) -> None:
        """An RPC to the peer failed: it leaves at its MAX_FAILURES-th failure in a row."""
        entry = self.buckets.get(bucket_index(self.local, point(peer_id)), {}).get(peer_id)
        if entry is not None:
            entry.failures += 1
            if entry.failures >= MAX_FAILURES:
                self.remove(peer_id)

    def closest(self, target: int, count: int = BUCKET_SIZE) -> list[bytes]:
        entries = [e for bucket in self.buckets.values() for e in bucket.values()]
        entries.sort(key=lambda e: e.point ^ target)
        return [e.peer_id for e in entries[:count]]

    def entries(self) -> list[Entry]:
        return sorted(
            (e for b in self.buckets.values() for e in b.values()), key=lambda e: e.point ^ self.local
        )


@dataclass
class ProviderStore:
    """Provider records others gave us: key -> provider peer id -> (addresses, expiry)."""

    clock: Callable[[], float] = time.time
    records: dict[bytes, dict[bytes, tuple[tuple[bytes, ...], float]]] = field(default_factory=dict)

    def add(self, key: bytes, provider: bytes, addrs: tuple[bytes, ...]) -> bool:
        if len(key) > MAX_KEY_BYTES:
            return False
        providers = self.records.setdefault(key, {})
        if provider not in providers and len(providers) >= MAX_PROVIDERS_PER_KEY:
            oldest = min(providers, key=lambda p: providers[p][1])
            del providers[oldest]
        providers[provider] = (addrs, self.clock() + PROVIDER_TTL_S)
        return True

    def get(self, key: bytes) -> dict[bytes, tuple[bytes, ...]]:
        now = self.clock()
        return {p: addrs for p, (addrs, expiry) in self.records.get(key, {}).items() if expiry > now}

    def expire(self) -> int:
        """Drop expired records; returns how many went."""
        now, removed = self.clock(), 0
        for key in list(self.records):
            providers = self.records[key]
            for provider in [p for p, (_, expiry) in providers.items() if expiry <= now]:
                del providers[provider]
                removed += 1
            if not providers:
                del self.records[key]
        return removed
