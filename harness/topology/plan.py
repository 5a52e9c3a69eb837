"""Plan: a topology with everything allocated. The single source of truth after validation.

Renderer, readiness, clients and teardown read the plan; nobody re-parses YAML or asks docker
for what the plan already knows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

from harness.errors import PoolExhaustedError
from harness.impl import (
    API_PORT,
    DEFAULT_IMPL,
    DISC_PORT,
    LISTEN_PORT,
    LOGOS_STORAGE,
    METRICS_PORT,
    REFERENCE_CAPABILITIES,
    REFERENCE_EXTRAS,
    Profile,
)
from harness.impl import profile as profile_of
from harness.paths import REPO_ROOT
from harness.topology.model import (
    CGN_PROFILES,
    HEALTHCHECK_INTERVAL_S,
    HOME_ROUTER_PROFILE,
    STUN_SERVICE,
    WAKU_SERVICE,
    Link,
    Network,
    Node,
    StatusPeer,
    Topology,
)

STUN_PORT = 3478
STATUS_PORT = 3333  # status-backend --address
CHAT_PORT = 30303  # the reference peer's chat transport (gossipsub)
RELAY_PORT = 4001
FLEET_INFO_PORT = 8082  # the Waku fleet node's GET /info (its peer id and addresses)
RELAY_INFO_PORT = 8082  # the testbed relay's /info (where a reference node learns what to reserve on)
FIRST_HOST = 10  # .1 is docker's bridge; on a LAN, .2 is the router
LAN_ROUTER_HOST = 2
PCAP_DIR = "/pcap"  # where a router with `pcap: true` writes lan.pcap and wan.pcap
# The ports each kind of service listens on. An upper-case key is the env variable that moves the
# port (a topology's `env` may: the loader keeps a service's ports in range and distinct); a
# lower-case key says what a port no variable moves is. A storage node's ports are named by their
# CLI flag, which either era's env spelling (CODEX_API_PORT, STORAGE_API_PORT) moves.
SERVICE_PORTS = {
    "codex": {
        "--api-port": API_PORT,
        "--disc-port": DISC_PORT,
        "--metrics-port": METRICS_PORT,
        "the listen port": LISTEN_PORT,
    },
    "relay": {"RELAY_LISTEN_PORT": RELAY_PORT, "the info port": RELAY_INFO_PORT},
    "status": {"STATUS_CHAT_PORT": CHAT_PORT, "the status-backend port": STATUS_PORT},
}


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    kind: str
    subnet: str
    gateway: str  # docker's bridge address (the host's leg); LAN nodes route via their router instead
    internal: bool
    bridge: str | None = None  # host bridge name (for the host firewall guard)


@dataclass(frozen=True)
class RouterPlan:
    """A NAT router between its `lan` and its uplink (`wan_network`). A CGNAT LAN has two in a
    chain: its home router uplinks to a carrier network, whose CGN router uplinks to the WAN."""

    name: str
    image: str
    lan: str
    nat: str  # the profile this router applies
    declared: str  # the LAN's profile in the topology (cgnat for both routers of a CGN chain)
    wan_network: str
    wan_ip: str
    public_ip: str  # where the world sees the LAN: the WAN address at the end of the chain
    upstream: str | None  # a default route (a home router's CGN); None: no default route
    lan_ip: str
    lan_subnet: str
    lan_host: str  # the LAN host that forwarding profiles (full/restricted cone, port-forward) target
    hairpin: bool
    udp_timeout: int | None
    tcp_timeout: int | None
    forward_ports: tuple[int, ...]
    pcap: bool = False  # capture on both legs into PCAP_DIR
    port_mapping: str | None = None  # grant | refuse | broken: miniupnpd answers the LAN


@dataclass(frozen=True)
class StunPlan:
    """The NAT referee: coturn with RFC 5780 on two WAN addresses."""

    name: str
    image: str
    ip: str
    alt_ip: str


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: str
    image: str
    reference: bool
    network: str
    ip: str
    api_port: int
    env: dict[str, str]
    peers: tuple[str, ...]  # the nodes it must be connected to once ready
    impl: str = DEFAULT_IMPL  # the contract it serves: harness.impl.PROFILES
    capabilities: tuple[str, ...] = ()  # what it can do beyond that contract (harness.impl.CAP_*)
    gateway: str | None = None  # its router's LAN address when it sits behind a NAT
    relay: str | None = None  # the relay it reserves a slot on
    link: Link | None = None  # shaping of its link, both directions
    announce_ip: str = ""  # what it announces (`nat=extip:`): its own address, or, behind a
    # port-forwarding router, the router's WAN address, as one configures a forwarded node; empty
    # behind another NAT where its implementation finds out by AutoNAT (announce_ip_of)

    @property
    def profile(self) -> Profile:
        return profile_of(self.impl)

    @property
    def api_url(self) -> str:
        return f"http://{self.ip}:{self.api_port}{self.profile.api_prefix}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{self.env.get(self.profile.env('metrics-port'), METRICS_PORT)}/metrics"


@dataclass(frozen=True)
class WakuPlan:
    """The Waku fleet stand-in on the WAN (images/status-ref, `waku-fleet`): every status peer's
    chat transport dials it, as status-go's dials its fleet, so peers behind NATs chat too."""

    name: str
    image: str
    ip: str

    @property
    def info_url(self) -> str:
        return f"http://{self.ip}:{FLEET_INFO_PORT}/info"


@dataclass(frozen=True)
class RelayPlan:
    """A circuit relay v2 on the WAN; nodes learn its peer id from GET <info_url>."""

    name: str
    image: str
    ip: str
    profile: str
    env: dict[str, str]

    @property
    def info_url(self) -> str:
        return f"http://{self.ip}:{RELAY_INFO_PORT}/info"


@dataclass(frozen=True)
class StatusPlan:
    """A status-go peer: the status-backend HTTP surface on STATUS_PORT; its storage node embedded
    (its libstorage config in env, STATUS_STORAGE_CONFIG) or, with `codex`, a separate node's API
    in env (CODEX_API_URL)."""

    name: str
    image: str
    reference: bool
    role: str
    codex: str | None
    network: str
    ip: str
    env: dict[str, str]
    gateway: str | None = None  # its router's LAN address when it sits behind a NAT

    @property
    def embedded(self) -> bool:
        return self.codex is None

    @property
    def kind(self) -> str:
        return "status"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{STATUS_PORT}"


@dataclass(frozen=True)
class Plan:
    project: str
    topology: str
    source: str
    created: str
    networks: dict[str, NetworkPlan]
    nodes: dict[str, NodePlan]
    edges: tuple[tuple[str, str], ...]  # connections made during readiness (first dials second)
    routers: dict[str, RouterPlan]
    stun: StunPlan | None
    status: dict[str, StatusPlan] = field(default_factory=dict)
    relays: dict[str, RelayPlan] = field(default_factory=dict)
    healthcheck_interval: int = HEALTHCHECK_INTERVAL_S
    seed: int = 0  # the topology's: seeds the link stages' draws
    link_stage_image: str = ""  # the link stages' image, when a node's link has conditions
    tcp_congestion: str | None = None  # the topology's: every endpoint's TCP congestion control
    waku: WakuPlan | None = None  # with status peers

    @property
    def containers(self) -> list[str]:
        """Every service the testbed runs (nodes, status peers, the fleet node, relays, routers,
        referee), by name."""
        return [
            *self.nodes,
            *self.status,
            *([self.waku.name] if self.waku else []),
            *self.relays,
            *self.routers,
            *([self.stun.name] if self.stun else []),
        ]

    def _peer(self, name: str) -> NodePlan | StatusPlan:
        return self.nodes[name] if name in self.nodes else self.status[name]

    def router_of(self, node: str) -> RouterPlan | None:
        """The (home) router in front of a node or status peer, None for one on the WAN."""
        return self.routers.get(f"router-{self._peer(node).network}")

    def seen_as(self, node: str) -> str:
        """The address the WAN sees a node's (or status peer's) connections come from: its own on
        the WAN, else the WAN address at the end of its router chain."""
        router = self.router_of(node)
        return router.public_ip if router else self._peer(node).ip

    @property
    def lan_routers(self) -> list[RouterPlan]:
        """The router in front of each LAN, through which the referee classifies it: a CGNAT
        LAN's home router (its CGN router, in front of a carrier network, is classified with it)."""
        return [router for router in self.routers.values() if self.networks[router.lan].kind == "lan"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            project=raw["project"],
            topology=raw["topology"],
            source=raw["source"],
            created=raw["created"],
            networks={k: NetworkPlan(**v) for k, v in raw["networks"].items()},
            nodes={
                k: NodePlan(
                    **{
                        **v,
                        "peers": tuple(v["peers"]),
                        "capabilities": tuple(v.get("capabilities", ())),
                        "link": Link.from_dict(v["link"]) if v["link"] else None,
                    }
                )
                for k, v in raw["nodes"].items()
            },
            edges=tuple(tuple(e) for e in raw["edges"]),
            routers={
                k: RouterPlan(**{"tcp_timeout": None, **v, "forward_ports": tuple(v["forward_ports"])})
                for k, v in raw["routers"].items()
            },
            stun=StunPlan(**raw["stun"]) if raw["stun"] else None,
            status={k: StatusPlan(**v) for k, v in raw.get("status", {}).items()},
            relays={k: RelayPlan(**v) for k, v in raw.get("relays", {}).items()},
            healthcheck_interval=raw.get("healthcheck_interval", HEALTHCHECK_INTERVAL_S),
            seed=raw.get("seed", 0),
            link_stage_image=raw.get("link_stage_image", ""),
            tcp_congestion=raw.get("tcp_congestion"),
            waku=WakuPlan(**raw["waku"]) if raw.get("waku") else None,
        )


def new_project_name(topology: str) -> str:
    """Unique per run: `tb-<topology>-<xdist worker>-<random>`, valid for both compose flavours."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    parts = ["tb", topology, worker, secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def capabilities_of(node: Node) -> tuple[str, ...]:
    """What a node can do beyond the REST contract: its profile's; for the reference node, what
    it does in either era, and its test extras unless it is strict."""
    if node.image is not None:
        return tuple(sorted(profile_of(node.impl or DEFAULT_IMPL).capabilities))
    reference = REFERENCE_CAPABILITIES | (set() if node.strict else REFERENCE_EXTRAS)
    return tuple(sorted(profile_of(node.impl or DEFAULT_IMPL).capabilities | reference))


def node_env(node: Node, announce_ip: str, relay_info_url: str | None = None) -> dict[str, str]:
    """A storage node's configuration, as its container gets it (a testbed's env file, or the env
    of a single container, harness/single.py): its profile's spelling, strict for a
    reference node asked to be. An empty `announce_ip`: it sits behind a NAT and announces what
    it finds (its profile's `autonat_flags`)."""
    strict = node.image is None and node.strict
    return _node_env(node, profile_of(node.impl or DEFAULT_IMPL), announce_ip, relay_info_url, strict)


def announce_ip_of(profile: Profile, ip: str, behind_nat: bool, router_wan_ip: str | None) -> str:
    """What a node is told to announce: behind a port-forwarding router, that router's WAN
    address; behind another NAT nothing where its implementation finds out by AutoNAT (empty),
    else its own address, as on the WAN."""
    if router_wan_ip is not None:
        return router_wan_ip
    return "" if behind_nat and profile.autonat_flags is not None else ip


def nat_flags(profile: Profile, announce_ip: str) -> dict[str, str]:
    """`nat=extip:` with what a node announces, or with nothing to announce its profile's
    AutoNAT flags."""
    return {"nat": f"extip:{announce_ip}"} if announce_ip else dict(profile.autonat_flags or {})


def serves_autonat(profile: Profile, announce_ip: str) -> bool:
    """Whether a node is started as an AutoNAT server: in the Logos era, a node that announces
    an address (`--autonat-server` needs `--nat=extip:`), as upstream's bootstrap nodes are, so
    that the AutoNAT clients behind NATs have servers to ask. The Codex era has no AutoNAT."""
    return bool(announce_ip) and profile.autonat_flags is not None


def _node_env(
    node, profile: Profile, announce_ip: str, relay_info_url: str | None, strict: bool
) -> dict[str, str]:
    """The node's configuration as its implementation spells it (`<PREFIX><FLAG>`, upstream's
    long CLI flags); the topology's own `env` goes last and wins."""
    where = {
        # REST is off in a Logos-era node unless bound, and on 127.0.0.1 in a Codex-era one.
        "api-bindaddr": "0.0.0.0",
        "api-port": str(API_PORT),
        "data-dir": "/datadir",
    }
    flags = {
        # Announce the WAN address explicitly: upstream's NAT_IP_AUTO breaks on multi-homed containers.
        **nat_flags(profile, announce_ip),
        "autonat-server": "true" if serves_autonat(profile, announce_ip) else None,
        "log-level": node.log_level or "info",
        "metrics": "true",
        "metrics-address": "0.0.0.0",
        "metrics-port": str(METRICS_PORT),
        "storage-quota": node.storage_quota.replace(" ", "") if node.storage_quota else None,
        "block-ttl": node.block_ttl,
        "repo-kind": node.repo_kind,
        "relay-info-url": relay_info_url,  # the reference node's relay client (not an upstream flag)
        "strict": "true" if strict else None,  # the reference node's, likewise
    }
    spelled = {
        profile.env(flag): value
        for flag, value in {**where, **flags, **node.flags}.items()
        if value is not None
    }
    listen = profile.listen_env()
    ordered = {k: spelled[k] for k in (profile.env(f) for f in where)} | listen | spelled
    return {**ordered, **node.env}


def storage_config(peer: StatusPeer, announce_ip: str, relay_info_url: str | None) -> dict:
    """An embedded storage node's libstorage config (the node's CLI option names as keys, as
    status-go passes them): a fixed listen port and, as a Logos-era storage node's, its own
    address announced, or behind a NAT (empty `announce_ip`) the AutoNAT flags; `/metrics` on,
    the one surface of it the harness can read (libstorage serves no REST); the topology's
    `storage:` goes last and wins."""
    config = {
        "listen-port": LISTEN_PORT,
        **nat_flags(LOGOS_STORAGE, announce_ip),
        "log-level": "info",
        "metrics": True,
        "metrics-address": "0.0.0.0",
        "metrics-port": METRICS_PORT,
    }
    if relay_info_url:
        config["relay-info-url"] = relay_info_url  # the reference node's relay client
    return {**config, **peer.storage}


def _bridge_name(project: str, network: str) -> str:
    """A host bridge name (at most 15 characters) unique to this project's LAN."""
    return "tb" + hashlib.sha256(f"{project}/{network}".encode()).hexdigest()[:10]


def host_capacity(prefix: int) -> int:
    """How many addresses make_plan can hand out in a subnet with this prefix (from .10 up)."""
    return 2 ** (32 - prefix) - 2 - (FIRST_HOST - 1)


def address_demand(topology: Topology) -> Counter[str]:
    """How many addresses make_plan hands out from .10 up on each network (it runs out past a
    subnet's end): on the WAN the referee's two, a router per LAN and the relays; every node and
    status peer on its own network; a CGNAT LAN's home router on its carrier network."""
    demand = Counter({name: 0 for name in [*topology.networks, *topology.carriers]})
    lans = topology.lans
    fleet = 1 if topology.status else 0
    demand[topology.wan.name] += (2 if lans else 0) + len(lans) + len(topology.relays) + fleet
    demand.update(node.network for node in topology.nodes.values())
    demand.update(peer.network for peer in topology.status.values())
    demand.update(topology.carriers)
    return demand


class _FreeHosts:
    """Each network's free addresses, from .10 up, handed out in order."""

    def __init__(self) -> None:
        self._hosts: dict[str, Iterator[ipaddress.IPv4Address]] = {}

    def add(self, network: str, hosts: list[ipaddress.IPv4Address]) -> None:
        self._hosts[network] = iter(hosts[FIRST_HOST - 1 :])

    def take(self, network: str) -> str:
        host = next(self._hosts[network], None)
        if host is None:
            raise PoolExhaustedError(f"network {network}: no free address left in its subnet")
        return str(host)


def _peers_by_node(edges: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    peers = defaultdict(set)
    for a, b in edges:
        peers[a].add(b)
        peers[b].add(a)
    return {name: tuple(sorted(names)) for name, names in peers.items()}


def make_plan(
    topology: Topology,
    subnets: list[ipaddress.IPv4Network],
    image_refs: dict[str, str],
    project: str | None = None,
    created: str | None = None,
) -> Plan:
    """Allocate addresses: one subnet per network (in declaration order). On the WAN, hosts from .10
    go to the referee (two addresses) and routers first, then to nodes; on a LAN, .2 is its router
    and nodes get .10 up."""
    project = project or new_project_name(topology.name)
    networks: dict[str, NetworkPlan] = {}
    free_hosts = _FreeHosts()
    names = [*topology.networks, *topology.carriers]
    for name, kind, subnet in zip(names, topology.network_kinds(), subnets, strict=True):
        hosts = list(subnet.hosts())
        networks[name] = NetworkPlan(
            name=name,
            kind=kind,
            subnet=str(subnet),
            gateway=str(hosts[0]),
            internal=kind == "wan",
            bridge=_bridge_name(project, name),
        )
        free_hosts.add(name, hosts)
    wan = topology.wan.name
    stun = None
    if topology.lans:
        stun = StunPlan(
            name=STUN_SERVICE,
            image=image_refs["stun"],
            ip=free_hosts.take(wan),
            alt_ip=free_hosts.take(wan),
        )
    router_wan_ips = {lan.name: free_hosts.take(wan) for lan in topology.lans}
    relays = {}
    for relay in topology.relays.values():
        ip = free_hosts.take(wan)
        env = {"RELAY_PROFILE": relay.profile, "RELAY_ANNOUNCE_IP": ip, "RELAY_LISTEN_PORT": str(RELAY_PORT)}
        relays[relay.name] = RelayPlan(
            relay.name, image_refs["relay"], ip, relay.profile, {**env, **relay.env}
        )
    waku = WakuPlan(WAKU_SERVICE, image_refs["status-ref"], free_hosts.take(wan)) if topology.status else None
    edges = topology.edges()
    peers_of = _peers_by_node(edges)
    nodes = {}
    for node in topology.nodes.values():
        ip = free_hosts.take(node.network)
        behind_nat = networks[node.network].kind == "lan"
        forwarded = topology.networks[node.network].nat == "port-forward"
        impl = profile_of(node.impl or DEFAULT_IMPL)
        announce_ip = announce_ip_of(
            impl, ip, behind_nat, router_wan_ips[node.network] if forwarded else None
        )
        image = node.image or image_refs[node.reference_image]  # type: ignore[index]
        reference = node.image is None
        relay_info = relays[node.relay].info_url if node.relay else None
        env = node_env(node, announce_ip, relay_info)
        nodes[node.name] = NodePlan(
            name=node.name,
            kind=node.kind,
            image=image,
            reference=reference,
            network=node.network,
            ip=ip,
            api_port=int(env[impl.env("api-port")]),
            impl=impl.name,
            capabilities=capabilities_of(node),
            env=env,
            link=node.link,
            announce_ip=announce_ip,
            peers=peers_of.get(node.name, ()),
            gateway=_lan_host(networks[node.network], LAN_ROUTER_HOST) if behind_nat else None,
            relay=node.relay,
        )
    status = {}
    for peer in topology.status.values():
        ip = free_hosts.take(peer.network)
        behind_nat = networks[peer.network].kind == "lan"
        relay_info = relays[peer.relay].info_url if peer.relay else None
        embedded_ip = announce_ip_of(LOGOS_STORAGE, ip, behind_nat, None)  # libstorage is Logos-era
        storage = (
            {"CODEX_API_URL": nodes[peer.codex].api_url}
            if peer.codex
            else {"STATUS_STORAGE_CONFIG": json.dumps(storage_config(peer, embedded_ip, relay_info))}
        )
        status[peer.name] = StatusPlan(
            name=peer.name,
            image=peer.image or image_refs[peer.reference_image],  # type: ignore[index]
            reference=peer.image is None,
            role=peer.role,
            codex=peer.codex,
            network=peer.network,
            ip=ip,
            env={
                **storage,
                "STATUS_CHAT_PORT": str(CHAT_PORT),
                "STATUS_ANNOUNCE_IP": ip,
                "STATUS_ROLE": peer.role,
                **peer.env,
            },
            gateway=_lan_host(networks[peer.network], LAN_ROUTER_HOST) if behind_nat else None,
        )
    routers = {}
    for lan in topology.lans:
        # what a forwarding profile forwards to: its first storage node (status peers, which may
        # be alone on a LAN, sit only behind profiles that forward nothing)
        first_node = next(n for n in [*nodes.values(), *status.values()] if n.network == lan.name)
        routers.update(
            _routers_of(
                lan, networks, image_refs["router"], router_wan_ips[lan.name], first_node.ip, free_hosts
            )
        )
    source = topology.source.resolve()
    return Plan(
        project=project,
        topology=topology.name,
        source=str(source.relative_to(REPO_ROOT)) if source.is_relative_to(REPO_ROOT) else str(source),
        created=created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        networks=networks,
        nodes=nodes,
        edges=tuple(edges),
        routers=routers,
        stun=stun,
        status=status,
        relays=relays,
        healthcheck_interval=topology.healthcheck_interval,
        seed=topology.seed,
        link_stage_image=image_refs.get("linkstage", ""),
        tcp_congestion=topology.tcp_congestion,
        waku=waku,
    )


def _routers_of(
    lan: Network,
    networks: dict[str, NetworkPlan],
    image: str,
    public_ip: str,
    lan_host: str,
    free_hosts: _FreeHosts,
) -> dict[str, RouterPlan]:
    """The router of a LAN; for a CGNAT LAN, its home router and the CGN router behind it."""
    assert lan.nat is not None
    home = RouterPlan(
        name=lan.router,
        image=image,
        lan=lan.name,
        nat=lan.nat,
        declared=lan.nat,
        wan_network="wan",
        wan_ip=public_ip,
        public_ip=public_ip,
        upstream=None,
        lan_ip=_lan_host(networks[lan.name], LAN_ROUTER_HOST),
        lan_subnet=networks[lan.name].subnet,
        lan_host=lan_host,
        hairpin=lan.hairpin,
        udp_timeout=lan.udp_timeout,
        tcp_timeout=lan.tcp_timeout,
        forward_ports=(LISTEN_PORT, DISC_PORT) if lan.nat == "port-forward" else (),
        pcap=lan.pcap,
        port_mapping=lan.port_mapping,  # a CGNAT LAN's home router: the mapping is on the carrier side
    )
    wan = next(n.name for n in networks.values() if n.kind == "wan")
    if not lan.cgn:
        return {home.name: replace(home, wan_network=wan)}
    carrier = networks[lan.carrier]
    cgn_ip = _lan_host(carrier, LAN_ROUTER_HOST)
    home_ip = free_hosts.take(carrier.name)
    cgn = RouterPlan(
        name=lan.cgn_router,
        image=image,
        lan=carrier.name,
        nat=CGN_PROFILES[lan.nat],
        declared=lan.nat,
        wan_network=wan,
        wan_ip=public_ip,
        public_ip=public_ip,
        upstream=None,
        lan_ip=cgn_ip,
        lan_subnet=carrier.subnet,
        lan_host=home_ip,
        hairpin=False,
        udp_timeout=None,
        tcp_timeout=None,
        forward_ports=(),
        pcap=lan.pcap,
    )
    home = replace(home, nat=HOME_ROUTER_PROFILE, wan_network=carrier.name, wan_ip=home_ip, upstream=cgn_ip)
    return {home.name: home, cgn.name: cgn}


def _lan_host(network: NetworkPlan, index: int) -> str:
    return str(ipaddress.IPv4Network(network.subnet).network_address + index)
