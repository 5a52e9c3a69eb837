"""The typed topology model a YAML file is loaded into. Validation lives in loader.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

NODE_KINDS = ("codex", "status", "relay")
RELAY_PROFILES = ("default", "unlimited")
STATUS_ROLES = ("owner", "member")
PEERING_MODES = ("mesh", "none")
REPO_KINDS = ("fs", "sqlite")
NETWORK_KINDS = ("wan", "lan")
# NAT profiles a LAN's router applies (the profile table of docs/nat.md). `public` means a node
# sits on the WAN itself, so it is not a LAN profile.
NAT_PROFILES = (
    "port-forward",
    "full-cone",
    "restricted-cone",
    "port-restricted",
    "port-restricted-rst",
    "symmetric",
    "udp-blocked",
    "short-udp-timeout",
    "cgnat",
    "cgnat-symmetric",
)
# Carrier-grade NAT: the LAN's home router (port-restricted) uplinks to a carrier network in
# 100.64.0.0/10, whose CGN router applies this profile towards the WAN.
TCP_CONGESTION = ("reno", "cubic", "bbr")  # what a topology may ask the kernel for
CGN_PROFILES = {"cgnat": "port-restricted", "cgnat-symmetric": "symmetric"}
# A LAN router's answer to UPnP IGD and NAT-PMP/PCP port-mapping requests (miniupnpd): `grant`
# maps, `refuse` answers "not authorized", `broken` maps and reports it, but forwards nothing.
PORT_MAPPING = ("grant", "refuse", "broken")
HOME_ROUTER_PROFILE = "port-restricted"
REFERENCE_IMAGES = {"codex": "codex-ref", "status": "status-ref", "relay": "relay"}
STUN_SERVICE = "stun"  # the NAT referee's service, added to a topology with a LAN
WAKU_SERVICE = "waku"  # the Waku fleet stand-in, added to a topology with status peers

# Docker's healthcheck of nodes and status peers, in seconds. Readiness polls the same probes from
# the host; docker's verdict only lets a wait fail fast on an unhealthy container. Each check
# starts processes in the container, so benchmarks set it long: no probe runs mid-measurement.
HEALTHCHECK_INTERVAL_S = 10
# An hour: docker's probe all but off, for many containers on few cores (every 10 s, 128 nodes'
# probes took more than half of two cores). Readiness still probes from the host.
HEALTHCHECK_RARELY_S = 3600


@dataclass(frozen=True)
class Network:
    name: str
    kind: str = "wan"
    nat: str | None = None  # LANs: the NAT profile of their router
    hairpin: bool = False
    udp_timeout: int | None = None  # seconds; conntrack's UDP mapping lifetime on the router
    tcp_timeout: int | None = None  # seconds; an established TCP mapping's idle lifetime on it
    pcap: bool = False  # the router captures both legs (headers); copied into the artifacts
    port_mapping: str | None = None  # one of PORT_MAPPING: the router serves UPnP / NAT-PMP / PCP

    @property
    def cgn(self) -> bool:
        """A CGNAT LAN: its home router sits behind a carrier-grade NAT on a carrier network."""
        return self.nat in CGN_PROFILES

    @property
    def router(self) -> str:
        """The service name of a LAN's (home) router."""
        return f"router-{self.name}"

    @property
    def cgn_router(self) -> str:
        return f"router-{self.name}-cgn"

    @property
    def carrier(self) -> str:
        """The name of the carrier network a CGNAT LAN's routers share."""
        return f"{self.name}-carrier"

    def routers(self) -> list[str]:
        """The routers the plan adds for this network (none for the WAN), by name."""
        if self.kind != "lan":
            return []
        return [self.router, self.cgn_router] if self.cgn else [self.router]


def added_services(networks: Iterable[Network]) -> list[str]:
    """Every service the plan may add to a topology's own, by name: the Waku fleet node (with
    status peers), the referee and each LAN's routers."""
    routers = [name for network in networks for name in network.routers()]
    return [WAKU_SERVICE, *([STUN_SERVICE, *routers] if routers else [])]


@dataclass(frozen=True)
class Shaping:
    """One direction of a link: its rate (tbf) and its conditions (delay, jitter, loss, reordering,
    with netem's meaning: a delay per direction, so a round trip adds both directions' delays)."""

    rate: str | None = None  # tc rate, e.g. "8mbit"
    delay_ms: int | None = None
    jitter_ms: int | None = None
    loss_pct: float | None = None
    reorder_pct: float | None = None  # this share of packets skips the delay (netem's `reorder`)

    @property
    def conditioned(self) -> bool:
        """Does this direction delay, drop or reorder packets (beyond a rate)?"""
        return bool(self.delay_ms or self.jitter_ms or self.loss_pct or self.reorder_pct)


@dataclass(frozen=True)
class Link:
    """A node's link to its network: `up` shapes what it sends, `down` what it receives."""

    up: Shaping = Shaping()
    down: Shaping = Shaping()

    @classmethod
    def both(cls, **shaping) -> Link:
        """The same shaping in both directions."""
        return cls(Shaping(**shaping), Shaping(**shaping))

    @classmethod
    def from_dict(cls, raw: dict) -> Link:
        return cls(Shaping(**raw["up"]), Shaping(**raw["down"]))

    @property
    def conditioned(self) -> bool:
        return self.up.conditioned or self.down.conditioned


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    network: str
    image: str | None = None  # an upstream image ref; None means the reference implementation
    impl: str | None = None  # the contract it serves (harness.impl.PROFILES); None: the default
    strict: bool = False  # a reference node serving only upstream's contract (--strict-reference)
    storage_quota: str | None = None
    block_ttl: str | None = None
    log_level: str | None = None
    repo_kind: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # upstream CLI options (`block-retries`), spelled as the node's implementation reads them
    flags: dict[str, str] = field(default_factory=dict)
    peers: tuple[str, ...] = ()  # nodes this one must be connected to, besides `peering`
    link: Link | None = None
    relay: str | None = None  # a circuit relay (kind: relay) the node reserves a slot on

    @property
    def reference_image(self) -> str | None:
        """The name of the image this project builds for the node, if it uses one."""
        return REFERENCE_IMAGES[self.kind] if self.image is None else None


@dataclass(frozen=True)
class Relay:
    """A circuit relay v2 (hop) on the WAN: `default` limits (go/nim: reservation 1 h, circuit
    120 s / 128 KiB) or `unlimited`."""

    name: str
    profile: str = "default"
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusPeer:
    """A status-go peer (`kind: status`). As status-go ships it, the peer runs its storage node in
    its own process (libstorage), configured by `storage` (the node's CLI option names), on any
    network, reserving on `relay` if given. With `codex`, it uses that separate node over REST
    instead (status-go's first proof of concept) and sits on that node's network."""

    name: str
    role: str  # owner (controls a community) or member
    network: str
    codex: str | None = None  # a separate storage node; None: the storage is embedded
    image: str | None = None  # a status-backend image; None means the reference peer
    env: dict[str, str] = field(default_factory=dict)
    storage: dict[str, str | int | bool | list[str]] = field(default_factory=dict)
    relay: str | None = None  # a circuit relay the embedded storage node reserves a slot on

    @property
    def embedded(self) -> bool:
        return self.codex is None

    @property
    def reference_image(self) -> str | None:
        return REFERENCE_IMAGES["status"] if self.image is None else None


@dataclass(frozen=True)
class Topology:
    name: str
    source: Path
    networks: dict[str, Network]
    nodes: dict[str, Node]
    description: str = ""
    peering: str = "mesh"
    healthcheck_interval: int = HEALTHCHECK_INTERVAL_S
    status: dict[str, StatusPeer] = field(default_factory=dict)
    relays: dict[str, Relay] = field(default_factory=dict)
    seed: int = 0  # seeds every random draw the testbed makes (link conditions), so a run repeats
    tcp_congestion: str | None = None  # every endpoint's TCP congestion control; None: the kernel's

    def edges(self) -> list[tuple[str, str]]:
        """Connections the testbed makes, (dialer, target): all pairs for `mesh`, plus each node's
        `peers`, each dialled from the side that can reach the other. Two nodes behind different
        NATs cannot connect without a relay, so they get no edge."""
        names = list(self.nodes)
        wanted = (
            {(a, b) for i, a in enumerate(names) for b in names[i + 1 :]} if self.peering == "mesh" else set()
        )
        for node in self.nodes.values():
            wanted.update((node.name, peer) for peer in node.peers if (peer, node.name) not in wanted)
        pairs = set()
        for a, b in wanted:
            if self.reachable(a, b):
                pairs.add((a, b))
            elif self.reachable(b, a):
                pairs.add((b, a))  # the NATed side dials out
        return sorted(pairs)

    @property
    def wan(self) -> Network:
        return next(n for n in self.networks.values() if n.kind == "wan")

    def images(self) -> set[str]:
        """The images this project builds that the topology needs."""
        peers = [*self.nodes.values(), *self.status.values()]
        wanted = {peer.reference_image for peer in peers if peer.reference_image}
        wanted |= {"router", "stun"} if self.lans else set()
        wanted |= {"relay"} if self.relays else set()
        wanted |= {"status-ref"} if self.status else set()  # the Waku fleet node runs on its image
        # conditions on a kernel without netem run in link stages (also when it has netem: the
        # engine's kernel is known only once it answers, and the image is small)
        return wanted | (
            {"linkstage"} if any(n.link and n.link.conditioned for n in self.nodes.values()) else set()
        )

    @property
    def lans(self) -> list[Network]:
        return [n for n in self.networks.values() if n.kind == "lan"]

    @property
    def carriers(self) -> list[str]:
        """The carrier networks the plan adds, one per CGNAT LAN (named `<lan>-carrier`)."""
        return [lan.carrier for lan in self.lans if lan.cgn]

    def network_kinds(self) -> list[str]:
        """The kind of every network the plan allocates a subnet for, in allocation order."""
        return [*(n.kind for n in self.networks.values()), *("carrier" for _ in self.carriers)]

    def reachable(self, dialer: str, target: str) -> bool:
        """Can `dialer` open a connection to `target`? Without a relay, a node behind NAT is
        reachable only from its own LAN (port-forward aside)."""
        target_net = self.networks[self.nodes[target].network]
        if target_net.kind == "wan" or target_net.nat == "port-forward":
            return True
        return self.nodes[dialer].network == target_net.name
