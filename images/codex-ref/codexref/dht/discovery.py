"""Content discovery over the DHT, as the Logos-era node does it (logos-storage-nim
`storage/blockexchange/engine/{advertiser,discovery}.nim`, `storage/discovery.nim`).

Advertiser: only manifests are announced, keyed by the manifest CID's multihash. A new one is
announced at once. Every stored manifest is announced again by a sweep: at start, every
`--advertise-interval` (upstream: every 30 min, plus nim-libp2p's own republish of provided keys
every 10 min), and as soon as the node becomes reachable (upstream sweeps whenever its announced
addresses change). Nothing is announced while others cannot reach the node (DHT server mode, or a
relay reservation); a manifest already being announced is not announced twice at once. At most
10 announcements run at a time. `--advertise-content=false` turns it off.
Finder: a download whose blocks no connected peer has asks the DHT for the manifest's providers,
at most once every 3 s per manifest, and dials each one that is not yet a BlockExchange peer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

import trio
from codexref.dht.kademlia import KadDHT, decodable_multiaddrs
from libp2p.peer.id import ID
from testbed_toolkit.cid import Cid

log = logging.getLogger("codex.discovery")
CONCURRENT_PROVIDES = 10
PROVIDE_TIMEOUT_S = 60
FIND_RATE_LIMIT_S = 3  # upstream's DiscoveryRateLimit
FIND_TIMEOUT_S = 60
GATE_POLL_S = 2  # how often a queued announcement checks whether we became reachable


class Advertiser:
    def __init__(
        self,
        dht: KadDHT,
        manifests: Callable[[], Iterable[Cid]],
        interval_s: float,
        may_advertise: Callable[[], bool],
    ) -> None:
        self.dht = dht
        self.manifests = manifests
        self.interval_s = interval_s
        self.may_advertise = may_advertise
        self._new, self._queued = trio.open_memory_channel[Cid](math.inf)
        self._token: trio.lowlevel.TrioToken | None = None
        self._in_flight: set[bytes] = set()  # multihashes being announced now

    def manifest_stored(self, cid: Cid) -> None:
        """Called by the store, from any thread: announce this manifest soon."""
        if self._token is not None:
            self._token.run_sync_soon(self._new.send_nowait, cid)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        limiter = trio.CapacityLimiter(CONCURRENT_PROVIDES)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_new, nursery, limiter)
            task_status.started()
            while True:
                if self.may_advertise():
                    cids = list(self.manifests())
                    log.info("advertising %d stored manifests", len(cids))
                    for cid in cids:
                        nursery.start_soon(self._provide, cid, limiter)
                    await trio.sleep(self.interval_s)
                else:
                    await self._reachable_within(self.interval_s)

    async def _reachable_within(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            while not self.may_advertise():
                await trio.sleep(GATE_POLL_S)

    async def _announce_new(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        async for cid in self._queued:
            while not self.may_advertise():
                await trio.sleep(GATE_POLL_S)
            nursery.start_soon(self._provide, cid, limiter)

    async def _provide(self, cid: Cid, limiter: trio.CapacityLimiter) -> None:
        key = cid.multihash()
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        try:
            async with limiter:
                with trio.move_on_after(PROVIDE_TIMEOUT_S):
                    took = await self.dht.provide(key)
                    log.debug("advertised %s to %d peers", cid, took)
        finally:
            self._in_flight.discard(key)


class Finder:
    def __init__(
        self,
        dht: KadDHT,
        connected: Callable[[ID], bool],
        connect: Callable[[str, list[str]], Awaitable[bool]],
    ) -> None:
        self.dht = dht
        self.connected = connected
        self.connect = connect
        self.last_search: dict[Cid, float] = {}
        self.nursery: trio.Nursery | None = None

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def find(self, manifest: Cid) -> None:
        """Look for the manifest's providers in the background (rate-limited per manifest)."""
        now = time.monotonic()
        if self.nursery is None or now - self.last_search.get(manifest, -math.inf) < FIND_RATE_LIMIT_S:
            return
        self.last_search[manifest] = now
        self.nursery.start_soon(self._find, manifest)

    async def _find(self, manifest: Cid) -> None:
        with trio.move_on_after(FIND_TIMEOUT_S):
            providers = await self.dht.find_providers(manifest.multihash())
            fresh = {ID(p): addrs for p, addrs in providers.items() if not self.connected(ID(p))}
            log.info("%s: %d providers, %d not BlockExchange peers yet", manifest, len(providers), len(fresh))
            async with trio.open_nursery() as nursery:
                for peer, addrs in fresh.items():
                    nursery.start_soon(
                        self.connect, peer.to_base58(), [str(a) for a in decodable_multiaddrs(addrs)]
                    )
