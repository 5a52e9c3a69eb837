"""Prometheus metrics with upstream's names, on their own registry (nim-codex bd360322:
`codex/rest/api.nim`, `codex/blockexchange/engine/{engine,pendingblocks}.nim`,
`codex/stores/repostore/operations.nim`; the Logos era renames `codex_` to `storage_`).

Names are upstream's with `{prefix}` where the era's prefix goes. Counters are declared with the
base names; the client exposes them as `<name>_total`, as nim-metrics does.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from codexref.era import CODEX

COUNTERS = {
    "uploads": "{prefix}api_uploads",
    "downloads": "{prefix}api_downloads",
    "want_have_lists_sent": "{prefix}block_exchange_want_have_lists_sent",
    "want_have_lists_received": "{prefix}block_exchange_want_have_lists_received",
    "want_block_lists_sent": "{prefix}block_exchange_want_block_lists_sent",
    "want_block_lists_received": "{prefix}block_exchange_want_block_lists_received",
    "blocks_sent": "{prefix}block_exchange_blocks_sent",
    "blocks_received": "{prefix}block_exchange_blocks_received",
    "spurious_blocks_received": "{prefix}block_exchange_spurious_blocks_received",
    "peer_timeouts": "{prefix}block_exchange_peer_timeouts",
    "requests_failed": "{prefix}block_exchange_requests_failed",
}
# Ours, not upstream's (left out in strict mode): deliveries of blocks already stored.
REFERENCE_COUNTERS = {
    "duplicate_blocks_received": "{prefix}block_exchange_duplicate_blocks_received",
}
GAUGES = {
    "pending_block_requests": "{prefix}block_exchange_pending_block_requests",
    "repostore_blocks": "{prefix}repostore_blocks",
    "repostore_bytes_used": "{prefix}repostore_bytes_used",
    "repostore_bytes_reserved": "{prefix}repostore_bytes_reserved",
    # nim-libp2p's connection manager (libp2p/connmanager.nim): not prefixed, in either era
    "libp2p_peers": "libp2p_peers",
    # nim-libp2p's Kad-DHT (libp2p/protocols/kademlia/kademlia_metrics.nim): Logos era only
    "kad_routing_table_peers": "kad_routing_table_peers",
}
# nim-libp2p's Kad-DHT message counters, by nim's MessageType name (`findNode`, `addProvider` ...):
# the size of each encoded message, without its length prefix, sent or received
KAD_COUNTERS = {
    "kad_messages_sent": "kad_messages_sent",
    "kad_messages_received": "kad_messages_received",
    "kad_message_bytes_sent": "kad_message_bytes_sent",
    "kad_message_bytes_received": "kad_message_bytes_received",
}


class Metrics:
    def __init__(self, prefix: str = CODEX.metric_prefix, strict: bool = False) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        # A reference-only counter still counts in strict mode, on no registry: callers need not care.
        reference_registry = None if strict else self.registry
        self.counters = {
            **{key: self._counter(name, self.registry) for key, name in COUNTERS.items()},
            **{key: self._counter(name, reference_registry) for key, name in REFERENCE_COUNTERS.items()},
        }

    def _counter(self, name: str, registry: CollectorRegistry | None) -> Counter:
        full = name.format(prefix=self.prefix)
        return Counter(full, full, registry=registry)

        self.kad_counters: dict[str, Counter] = {}

    def inc(self, key: str, amount: float = 1) -> None:
        self.counters[key].inc(amount)

    def enable_kad(self) -> None:
        """Register the Kad-DHT counters: a node that runs the DHT has them (the Codex era has none)."""
        self.kad_counters = {
            key: Counter(name, name, ["type"], registry=self.registry) for key, name in KAD_COUNTERS.items()
        }

    def count_kad(self, direction: str, type_name: str, size: int) -> None:
        """One Kad-DHT message `sent` or `received`, of `size` bytes."""
        self.kad_counters[f"kad_messages_{direction}"].labels(type_name).inc()
        self.kad_counters[f"kad_message_bytes_{direction}"].labels(type_name).inc(size)

    def gauge(self, key: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (no bookkeeping to get wrong)."""
        name = GAUGES[key].format(prefix=self.prefix)
        Gauge(name, name, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
