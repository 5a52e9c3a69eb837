"""Every container of a Plan as one typed service spec: what compose is told to run.

The renderer emits compose from these specs alone (compose/templates/compose.yaml.j2 has one
service block, not one per kind), so what a container gets — image, config, addresses, volume,
capabilities, healthcheck, and what readiness waits for before it calls the container ready
(its `ready` conditions, harness/render/conditions.py) — is decided here, in one place per kind,
and is data a test can read.
Every service drops all capabilities and runs with `no-new-privileges`; routers add NET_ADMIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.render.conditions import (
    Announces,
    AnswersDebugInfo,
    CircuitReservation,
    Condition,
    FleetAnswers,
    NatAsDeclared,
    PeeredWith,
    Running,
    StatusHealth,
)
from harness.topology.plan import (
    CHAT_PORT,
    FLEET_INFO_PORT,
    PCAP_DIR,
    STATUS_PORT,
    NodePlan,
    Plan,
    RelayPlan,
    RouterPlan,
    StatusPlan,
    WakuPlan,
)

HEALTH_TIMEOUT_S = 5
HEALTH_RETRIES = 12


@dataclass(frozen=True)
class Healthcheck:
    command: str  # run by /bin/sh in the container (CMD-SHELL)
    interval_s: int


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    role: str  # its `testbed.role` label
    image: str
    networks: dict[str, str]  # network -> the service's address on it
    env_file: str | None = None  # under the rendered folder (storage nodes, status peers)
    environment: dict[str, str] = field(default_factory=dict)  # given inline
    volume: str | None = None  # "<volume>:<path in the container>"
    init: bool = False  # a tiny init as PID 1 reaps what the service's scripts start
    entrypoint: tuple[str, ...] = ()  # instead of the image's (another program of the same image)
    cap_add: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    stop_grace_s: int = 10
    ready: tuple[Condition, ...] = (Running(),)  # every service runs; a kind may ask for more


def _node_ready(node: NodePlan, dials: tuple[str, ...]) -> tuple[Condition, ...]:
    peered = (PeeredWith(node.peers, dials, node.profile.peering),) if node.peers else ()
    reserved = (CircuitReservation(node.relay),) if node.relay else ()
    return (Running(), AnswersDebugInfo(), Announces(node.announce_ip), *peered, *reserved)


def _node(node: NodePlan, dials: tuple[str, ...], interval_s: int) -> ServiceSpec:
    # Same probe for the reference node and upstream images (both ship curl and jq). No pipe:
    # /bin/sh has no pipefail, and jq -e on empty input succeeds, so a failed curl must stop it.
    probe = (
        f"info=$(curl -sf http://127.0.0.1:{node.api_port}{node.profile.api_prefix}/debug/info)"
        ' && echo "$info" | jq -e \'.spr | startswith("spr:")\' >/dev/null'
    )
    return ServiceSpec(
        name=node.name,
        role=node.kind,
        image=node.image,
        networks={node.network: node.ip},
        env_file=f"nodes/{node.name}.env",
        volume=f"{node.name}-data:/datadir",
        healthcheck=Healthcheck(probe, interval_s),
        ready=_node_ready(node, dials),
    )


def _status(peer: StatusPlan, interval_s: int) -> ServiceSpec:
    probe = f"curl -sf -X POST http://127.0.0.1:{STATUS_PORT}/health >/dev/null"
    return ServiceSpec(
        name=peer.name,
        role="status",
        image=peer.image,
        networks={peer.network: peer.ip},
        env_file=f"nodes/{peer.name}.env",
        volume=f"{peer.name}-data:/usr/status-user",
        # a status-backend image brings its own probe; the reference peer's is ours
        healthcheck=Healthcheck(probe, interval_s) if peer.reference else None,
        ready=(Running(), StatusHealth()),
    )


def _waku(waku: WakuPlan, wan: str) -> ServiceSpec:
    return ServiceSpec(
        name=waku.name,
        role="waku",
        image=waku.image,
        networks={wan: waku.ip},
        environment={
            "STATUS_CHAT_PORT": str(CHAT_PORT),
            "STATUS_ANNOUNCE_IP": waku.ip,
            "STATUS_FLEET_INFO_PORT": str(FLEET_INFO_PORT),
        },
        entrypoint=("waku-fleet",),
        stop_grace_s=5,
        ready=(Running(), FleetAnswers()),
    )


def _relay(relay: RelayPlan, wan: str) -> ServiceSpec:
    env = dict(sorted(relay.env.items()))
    return ServiceSpec(
        name=relay.name,
        role="relay",
        image=relay.image,
        networks={wan: relay.ip},
        environment=env,
        stop_grace_s=5,
    )


def _router(router: RouterPlan, classified: bool) -> ServiceSpec:
    environment = {
        "NAT_PROFILE": router.nat,
        "WAN_IP": router.wan_ip,
        "LAN_IP": router.lan_ip,
        "LAN_SUBNET": router.lan_subnet,
        "LAN_HOST": router.lan_host,
        "FORWARD_PORTS": " ".join(str(port) for port in router.forward_ports),
        "HAIRPIN": "1" if router.hairpin else "0",
    }
    if router.upstream:
        environment["UPSTREAM_GATEWAY"] = router.upstream
    if router.pcap:
        environment["PCAP_DIR"] = PCAP_DIR
    if router.port_mapping:
        environment["PORT_MAPPING"] = router.port_mapping
    sysctls = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }
    if router.udp_timeout:
        sysctls["net.netfilter.nf_conntrack_udp_timeout"] = str(router.udp_timeout)
        sysctls["net.netfilter.nf_conntrack_udp_timeout_stream"] = str(router.udp_timeout)
    if router.tcp_timeout:
        sysctls["net.netfilter.nf_conntrack_tcp_timeout_established"] = str(router.tcp_timeout)
    # iptables (nf_tables), nft, ip and conntrack need NET_ADMIN alone; tcpdump opens raw sockets,
    # hands its capture files to, and then runs as, its own user.
    caps = ("NET_ADMIN", "NET_RAW", "CHOWN", "SETUID", "SETGID") if router.pcap else ("NET_ADMIN",)
    return ServiceSpec(
        name=router.name,
        role="router",
        image=router.image,
        networks={router.wan_network: router.wan_ip, router.lan: router.lan_ip},
        environment=environment,
        init=True,
        cap_add=caps,
        sysctls=sysctls,
        stop_grace_s=5,
        ready=(Running(), NatAsDeclared()) if classified else (Running(),),
    )


def _dials(plan: Plan, node: str) -> tuple[str, ...]:
    return tuple(target for dialer, target in plan.edges if dialer == node)


def services(plan: Plan) -> list[ServiceSpec]:
    """Every container compose runs for `plan`, in a stable order: nodes, status peers, the Waku
    fleet node, relays, routers, the referee."""
    wan = next(n.name for n in plan.networks.values() if n.kind == "wan")
    interval = plan.healthcheck_interval
    specs = [_node(node, _dials(plan, node.name), interval) for node in plan.nodes.values()]
    specs += [_status(peer, interval) for peer in plan.status.values()]
    specs += [_waku(plan.waku, wan)] if plan.waku else []
    specs += [_relay(relay, wan) for relay in plan.relays.values()]
    if plan.tcp_congestion:  # the TCP of every endpoint (routers only forward)
        sysctl = {"net.ipv4.tcp_congestion_control": plan.tcp_congestion}
        specs = [replace(spec, sysctls={**spec.sysctls, **sysctl}) for spec in specs]
    classified = {router.name for router in plan.lan_routers}
    specs += [_router(router, router.name in classified) for router in plan.routers.values()]
    if plan.stun:
        stun = plan.stun
        specs.append(
            ServiceSpec(
                name=stun.name,
                role="stun",
                image=stun.image,
                networks={wan: stun.ip},
                init=True,
                environment={"STUN_IP": stun.ip, "STUN_ALT_IP": stun.alt_ip},
                stop_grace_s=5,
            )
        )
    return specs
