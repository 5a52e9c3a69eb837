"""Plan: a topology with everything allocated. The single source of truth after validation.

Renderer, readiness, clients and teardown read the plan; nobody re-parses YAML or asks docker
for what the plan already knows.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass

from harness.paths import REPO_ROOT
from harness.topology.model import Topology

API_PORT = 8080
METRICS_PORT = 8008
LISTEN_PORT = 8070
DISC_PORT = 8090
FIRST_HOST = 10  # .1 is the bridge gateway; keep a few for routers and helpers later


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    kind: str
    subnet: str
    gateway: str
    internal: bool


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

    @property
    def api_url(self) -> str:
        return f"http://{self.ip}:{self.api_port}/api/codex/v1"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{METRICS_PORT}/metrics"


@dataclass(frozen=True)
class Plan:
    project: str
    topology: str
    source: str
    created: str
    networks: dict[str, NetworkPlan]
    nodes: dict[str, NodePlan]
    edges: tuple[tuple[str, str], ...]  # connections made during readiness (first dials second)

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
            nodes={k: NodePlan(**{**v, "peers": tuple(v["peers"])}) for k, v in raw["nodes"].items()},
            edges=tuple(tuple(e) for e in raw["edges"]),
        )


def new_project_name(topology: str) -> str:
    """Unique per run: `tb-<topology>-<xdist worker>-<random>`, valid for both compose flavours."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    parts = ["tb", topology, worker, secrets.token_hex(3)]
    return "-".join(p for p in parts if p)


def _codex_env(node, ip: str) -> dict[str, str]:
    env = {
        "CODEX_API_BINDADDR": "0.0.0.0",
        "CODEX_API_PORT": str(API_PORT),
        "CODEX_DATA_DIR": "/datadir",
        "CODEX_LISTEN_ADDRS": f"/ip4/0.0.0.0/tcp/{LISTEN_PORT}",
        "CODEX_DISC_PORT": str(DISC_PORT),
        # Announce the WAN address explicitly: upstream's NAT_IP_AUTO breaks on multi-homed containers.
        "CODEX_NAT": f"extip:{ip}",
        "CODEX_LOG_LEVEL": node.log_level or "info",
        "CODEX_METRICS": "true",
        "CODEX_METRICS_ADDRESS": "0.0.0.0",
        "CODEX_METRICS_PORT": str(METRICS_PORT),
    }
    if node.storage_quota:
        env["CODEX_STORAGE_QUOTA"] = node.storage_quota.replace(" ", "")
    if node.block_ttl:
        env["CODEX_BLOCK_TTL"] = node.block_ttl
    if node.repo_kind:
        env["CODEX_REPO_KIND"] = node.repo_kind
    env.update(node.env)
    return env


def make_plan(
    topology: Topology,
    subnets: list[ipaddress.IPv4Network],
    image_refs: dict[str, str],
    project: str | None = None,
    created: str | None = None,
) -> Plan:
    """Allocate addresses: one subnet per network (in declaration order), hosts from .10 up."""
    project = project or new_project_name(topology.name)
    networks: dict[str, NetworkPlan] = {}
    free_hosts = {}
    for network, subnet in zip(topology.networks.values(), subnets, strict=True):
        hosts = list(subnet.hosts())
        networks[network.name] = NetworkPlan(
            name=network.name,
            kind=network.kind,
            subnet=str(subnet),
            gateway=str(hosts[0]),
            internal=network.kind == "wan",
        )
        free_hosts[network.name] = iter(hosts[FIRST_HOST - 1 :])
    edges = topology.edges()
    nodes = {}
    for node in topology.nodes.values():
        ip = str(next(free_hosts[node.network]))
        image = node.image or image_refs[node.reference_image]  # type: ignore[index]
        nodes[node.name] = NodePlan(
            name=node.name,
            kind=node.kind,
            image=image,
            reference=node.image is None,
            network=node.network,
            ip=ip,
            api_port=API_PORT,
            env=_codex_env(node, ip),
            peers=tuple(sorted({b if a == node.name else a for a, b in edges if node.name in (a, b)})),
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
    )
