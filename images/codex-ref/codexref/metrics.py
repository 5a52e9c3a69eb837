"""Prometheus metrics with upstream's names, on their own registry (nim-codex bd360322:
`codex/rest/api.nim`, `codex/blockexchange/engine/{engine,pendingblocks}.nim`,
`codex/stores/repostore/operations.nim`).

Counters are declared with upstream's base names; the client exposes them as `<name>_total`,
as nim-metrics does. `duplicate_blocks_received` is ours: deliveries of blocks already stored.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

COUNTERS = {
    "uploads": "codex_api_uploads",
    "downloads": "codex_api_downloads",
    "want_have_lists_sent": "codex_block_exchange_want_have_lists_sent",
    "want_have_lists_received": "codex_block_exchange_want_have_lists_received",
    "want_block_lists_sent": "codex_block_exchange_want_block_lists_sent",
    "want_block_lists_received": "codex_block_exchange_want_block_lists_received",
    "blocks_sent": "codex_block_exchange_blocks_sent",
    "blocks_received": "codex_block_exchange_blocks_received",
    "spurious_blocks_received": "codex_block_exchange_spurious_blocks_received",
    "duplicate_blocks_received": "codex_block_exchange_duplicate_blocks_received",
    "peer_timeouts": "codex_block_exchange_peer_timeouts",
    "requests_failed": "codex_block_exchange_requests_failed",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counters = {key: Counter(name, name, registry=self.registry) for key, name in COUNTERS.items()}

    def inc(self, key: str, amount: float = 1) -> None:
        self.counters[key].inc(amount)

    def gauge(self, name: str, read) -> None:
        """A gauge read at scrape time (no bookkeeping to get wrong)."""
        Gauge(name, name, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
