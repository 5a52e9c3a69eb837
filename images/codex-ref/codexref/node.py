"""A node: config, repo, identity, libp2p host and BlockExchange engine, shared by REST and tasks."""

from __future__ import annotations

import logging
import socket

import multiaddr as ma
import trio
from Crypto.Hash import keccak
from libp2p.peer.id import ID
from testbed_toolkit import identity, p2p
from testbed_toolkit.nat import peer_connections, remote_address

from codexref import VERSION, debuginfo, multiaddr
from codexref.blockexc.engine import Engine, EngineConfig
from codexref.config import Config
from codexref.dht.discovery import Advertiser, Finder
from codexref.dht.kademlia import KadDHT
from codexref.metrics import Metrics
from codexref.reachability import Reachability
from codexref.relayclient import RelayClient
from codexref.store import RepoStore

REVISION = "reference"
CONNECT_TIMEOUT_S = 10
# A direct dial to a NATed peer's announced (LAN) address fails fast or not at all: bound it
# before falling back to the peer's /p2p-circuit address.
DIRECT_DIAL_TIMEOUT_S = 3
CLOSE_TIMEOUT_S = 5  # closing connections and listeners at stop
log = logging.getLogger("codex")


def _own_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def set_python_log_level(level: str) -> None:
    name = level.split(";")[0].upper()
    mapping = {"TRACE": "DEBUG", "NOTICE": "INFO", "WARN": "WARNING", "FATAL": "CRITICAL"}
    logging.getLogger().setLevel(mapping.get(name, name))


def node_id(peer_id_bytes: bytes) -> str:
    """The DHT node id upstream shows in /debug/info: keccak256 of the peer id bytes."""
    return keccak.new(digest_bits=256, data=peer_id_bytes).hexdigest()


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.data_dir.chmod(0o700)
        self.store = RepoStore(config.data_dir, config.storage_quota, config.repo_kind)
        self.identity = identity.load_or_create(config.data_dir / "key")
        self.announce_ip = config.announce_ip or _own_ip()
        self.listen_addresses = list(config.listen_addrs)  # once listening: the ports bound
        self.metrics = Metrics(config.era.metric_prefix, config.strict)
        self.metrics.gauge("repostore_blocks", lambda: self.store.total_blocks)
        self.metrics.gauge("repostore_bytes_used", lambda: self.store.quota_used_bytes)
        self.metrics.gauge("repostore_bytes_reserved", lambda: 0)
        self.host = p2p.build_host(self.identity, lambda: self.announce_addresses)
        # every connected peer, the relay included: upstream counts connections, not BlockExchange peers
        self.metrics.gauge("libp2p_peers", lambda: len(p2p.live_connections(self.host)))
        engine_config = EngineConfig(
            block_retries=config.block_retries, max_inflight_per_peer=config.max_inflight_per_peer
        )
        self.engine = Engine(self.host, self.store, self.metrics, engine_config)
        self.relay = RelayClient(self.host, config.relay_info_url) if config.relay_info_url else None
        self.reachability = Reachability(
            self.host,
            self.dial_back_addresses,
            config.autonat,
            client=config.autonat_client,
            serve=config.autonat_server,
        )
        self.dht: KadDHT | None = None
        self.advertiser: Advertiser | None = None
        self.finder: Finder | None = None
        if not config.era.discv5:
            self._build_dht()
        self.spr = self._signed_record()

    def _build_dht(self) -> None:
        """The Logos era's Kad-DHT: server mode with `--nat=extip:` (upstream's start), then as
        AutoNAT finds us reachable or not."""
        self.dht = KadDHT(
            self.host, self.metrics, self.reachable_addresses, server=self.config.announce_ip is not None
        )
        self.reachability.on_change = self.dht.set_server_mode
        # A provider counts as found when it is a BlockExchange peer, as upstream's discovery
        # counts peers that have the block: one connected by the DHT alone is dialled again (a
        # no-op on the connection) and so becomes one.
        self.finder = Finder(self.dht, lambda peer: peer in self.engine.peers, self.connect)
        self.engine.find_providers = self.finder.find
        if self.config.advertise_content:
            dht = self.dht
            self.advertiser = Advertiser(
                dht,
                lambda: (cid for cid, _ in self.store.manifests()),
                self.config.advertise_interval,
                may_advertise=lambda: dht.server or bool(self.relay and self.relay.reserved),
            )
            self.store.on_manifest = self.advertiser.manifest_stored

    def reachable_addresses(self) -> list[str]:
        """Where others can dial us: the announced addresses, and our relayed ones."""
        return [*self.announce_addresses, *self._circuit_addresses()]

    def _circuit_addresses(self) -> list[str]:
        return self.relay.circuit_addresses if self.relay else []

    @property
    def announce_addresses(self) -> list[str]:
        return [multiaddr.with_ip(addr, self.announce_ip) for addr in self.listen_addresses]

    def _signed_record(self) -> str:
        """Like upstream's discv5 record, the UDP discovery endpoint comes first (Codex era); the TCP
        addresses follow so that other reference nodes can dial a bootstrap node without a DHT."""
        port = self.config.disc_port
        udp = [] if port is None else [f"/ip4/{self.announce_ip}/udp/{port}"]
        record = [*udp, *self.announce_addresses]
        return self.identity.signed_peer_record([multiaddr.to_bytes(a) for a in record])

    def _bound(self) -> None:
        """Announce the ports the listeners got: with port 0 (upstream's `--listen-port` default)
        the OS picks one."""
        self.listen_addresses = [str(a) for a in self.host.get_transport_addrs()]
        self.spr = self._signed_record()

    def dial_back_addresses(self) -> list[str]:
        """What AutoNAT servers are asked to dial: our announce addresses, and the same ports at
        every IP peers observe us at (what a port-preserving NAT maps us to)."""
        own = self.announce_addresses
        return [*own, *(multiaddr.with_ip(a, ip) for ip in self.reachability.observed_ips() for a in own)]

    async def run_p2p(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen, start the engine, dial bootstrap nodes; reports started once listening."""
        listen = [ma.Multiaddr(a) for a in self.config.listen_addrs]
        async with self.host.run(listen_addrs=listen), trio.open_nursery() as nursery:
            self._bound()
            await nursery.start(self.engine.run)
            for service in (self.dht, self.finder, self.advertiser):
                if service is not None:
                    await nursery.start(service.run)
            events = p2p.PeerEvents(self.host, self._peer_joined, self.engine.peer_left)
            self.host.get_network().register_notifee(events)
            for spr in self.config.bootstrap_nodes:
                nursery.start_soon(self._keep_dialling, spr)
            if self.relay:
                await nursery.start(self.relay.run)
            await nursery.start(self.reachability.run)
            task_status.started()

    async def close(self) -> None:
        """Close every connection and listener while the node still runs, so peers see it go.
        py-libp2p's swarm, stopped by cancellation alone, leaves both open (its shutdown awaits
        their close inside the cancelled scope): a peer would keep a connection to a node that is
        gone, and a node restarted in the same process (an embedded one, at the next login)
        would find its port taken."""
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await self.host.get_network().close()

    def _peer_joined(self, peer: ID) -> None:
        """A new connection is a BlockExchange peer, unless it is our relay (which speaks only the
        relay protocols: treating it as a peer would end in a failed send and a disconnect)."""
        if not (self.relay and peer == self.relay.relay_peer):
            self.engine.peer_joined(peer)
            if self.dht is not None:
                self.dht.peer_connected(peer)

    async def _keep_dialling(self, spr: str) -> None:
        """Dial a bootstrap node until it answers (it may start after us), backing off to 30 s."""
        peer_id, addrs = p2p.decode_spr(spr)
        if peer_id == self.identity.peer_id:  # our own record: every dial would be refused
            log.info("bootstrap node %s is ourselves, not dialled", peer_id)
            return
        tcp = [a for a in addrs if "/tcp/" in a]
        delay = 1.0
        while ID.from_base58(peer_id) not in self.engine.peers:
            if await self.connect(peer_id, tcp):
                log.info("connected to bootstrap node %s", peer_id)
                return
            await trio.sleep(delay)
            delay = min(delay * 2, 30)

    async def connect(self, peer_id: str, addrs: list[str]) -> bool:
        """Dial the peer's direct addresses; if none answers, its first /p2p-circuit address
        (through our relay). DCUtR may later upgrade a relayed connection to a direct one."""
        if peer_id == self.identity.peer_id:
            # nim-libp2p's dialer refuses this ("can't dial self", a DialFailedError: libp2p/dialer.nim
            # @ aa8ce46f); py-libp2p would dial our own listener and list us as our own peer.
            log.info("dial %s refused: that is our own peer id", peer_id)
            return False
        direct = [a for a in addrs if "/p2p-circuit" not in a]
        circuits = [a for a in addrs if "/p2p-circuit" in a]
        direct_timeout_s = DIRECT_DIAL_TIMEOUT_S if circuits else CONNECT_TIMEOUT_S
        if direct and await self._dial(peer_id, direct, direct_timeout_s):
            return True
        return bool(circuits and self.relay) and await self._dial(peer_id, circuits[:1], CONNECT_TIMEOUT_S)

    async def _dial(self, peer_id: str, addrs: list[str], timeout_s: float) -> bool:
        with trio.move_on_after(timeout_s):
            try:
                if "/p2p-circuit" in addrs[0]:
                    assert self.relay is not None
                    await self.relay.dial(addrs[0])
                else:
                    await self.host.connect(p2p.peer_info(peer_id, addrs))
                self.engine.peer_joined(ID.from_base58(peer_id))
                return True
            except Exception as exc:
                log.info("dial %s %s failed: %r", peer_id, addrs, exc)
        log.info("dial %s %s: no answer in %s s", peer_id, addrs, timeout_s)
        return False

    def _peer_entry(self, peer: ID) -> dict:
        conns = self.host.get_network().get_connections(peer)
        return {
            "nodeId": node_id(peer.to_bytes()),
            "peerId": peer.to_base58(),
            "record": "",
            "address": remote_address(conns[0]) if conns else None,
            "seen": True,
        }

    def _discv5_table(self) -> dict | None:
        """The era's discv5 routing table: ours holds no DHT nodes, so it lists our connected
        BlockExchange peers instead (strict mode empties it)."""
        if self.config.disc_port is None:
            return None
        local = {
            "nodeId": node_id(self.identity.peer_id_bytes),
            "peerId": self.identity.peer_id,
            "record": self.spr,
            "address": f"{self.announce_ip}:{self.config.disc_port}",
            "seen": False,
        }
        return {"localNode": local, "nodes": [self._peer_entry(p) for p in self.engine.peers]}

    def _debug_state(self) -> debuginfo.NodeState:
        listening = [str(a).split("/p2p/")[0] for a in self.host.get_addrs()] or self.listen_addresses
        # a held reservation is an address of ours, as a libp2p switch lists its relayed listener
        circuits = self._circuit_addresses()
        return debuginfo.NodeState(
            peer_id=self.identity.peer_id,
            public_key_hex=self.identity.private_key.public_key.format(compressed=True).hex(),
            addrs=[*listening, *circuits],
            repo=str(self.config.data_dir),
            spr=self.spr,
            announce_addresses=self.announce_addresses,
            reachable_addresses=self.reachable_addresses(),
            version=VERSION,
            revision=REVISION,
            table=self._discv5_table(),
            dht_nodes=self.dht.table_nodes() if self.dht else [],
            # upstream's relayRunning is its AutoRelay client running: ours holding a reservation
            nat=self.reachability.nat_status(
                relay_running=bool(self.relay and self.relay.reserved),
                announced_ips={self.announce_ip},
                # upstream's is the DHT's mode; the Codex era has no DHT, so AutoNAT's verdict
                client_mode=not self.dht.server if self.dht else self.reachability.reachable is False,
            ),
            connections=peer_connections(self.host),
            relay=self.relay.status() if self.relay else None,
        )

    def debug_info(self) -> dict:
        return debuginfo.render(self._debug_state(), self.config.era, self.config.strict)

    def set_log_level(self, level: str) -> None:
        set_python_log_level(level)
        log.info("log level set to %s", level)
