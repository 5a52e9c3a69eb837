"""Implementation profiles: everything the harness may rely on when it talks to a storage node.

A node is an image plus the contract its implementation serves: the Codex era (`codex`:
`codexstorage/nim-codex` images and status-go's first integration) or the Logos era
(`logos-storage`, 2026). The harness reaches a node only through its profile: the REST prefix,
how its config is spelled, its ports, its healthcheck, how readiness tells that it is connected
to its peers, its metric names and what it can do. The reference node (`images/codex-ref`)
speaks either contract and adds test extras (fault injection, `/debug/connection`) that no
upstream node has; a feature that needs one declares it, and is skipped on an image without it.

Where each fact comes from is in `SOURCES` and in docs/real-images.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.errors import TestbedError

API_PORT = 8080
METRICS_PORT = 8008
LISTEN_PORT = 8070
DISC_PORT = 8090

# How readiness knows a node is connected to its planned peers, through public endpoints only.
PEERS_GAUGE = "libp2p_peers"  # nim-libp2p's "total connected peers" gauge on /metrics
CONNECTIONS = "connections"  # `/debug/info` `connections[].peerId` (Logos era)

# How a node is told where to listen for libp2p: `--listen-addrs` multiaddrs and a discv5 UDP port
# (Codex era), or `--listen-ip` + `--listen-port` (Logos era, PR #1409).
ListenStyle = Literal["addrs", "ip-port"]

# What a node can do beyond the common REST contract.
CAP_CONNECTIONS = "debug-info-connections"  # /debug/info connections[{peerId, direct}]
CAP_NAT_INFO = "debug-info-nat"  # /debug/info nat{reachability, clientMode, relayRunning, portMapping}
CAP_NAT_TRAVERSAL = "nat-traversal"  # AutoNAT v2, relay client, DCUtR, port mapping inside the node
CAP_REFERENCE_EXTRAS = "reference-extras"  # /debug/connection, relay section in /debug/info
# Kad-DHT over the libp2p switch (/ipfs/kad/1.0.0): /debug/info `table.nodes` is its routing
# table, nim-libp2p's kad_* counters on /metrics; providers of a manifest found through it
CAP_KAD_DHT = "kad-dht"
# The reference node (py-libp2p) runs AutoNAT, a relay client and DCUtR in either era; unless
# strict it also reports `nat` and `connections` in the Codex era, where upstream has neither.
REFERENCE_CAPABILITIES = frozenset({CAP_NAT_TRAVERSAL})
REFERENCE_EXTRAS = frozenset({CAP_REFERENCE_EXTRAS, CAP_CONNECTIONS, CAP_NAT_INFO})


@dataclass(frozen=True)
class Profile:
    name: str
    api_prefix: str
    env_prefix: str  # every CLI flag `--a-b` can be given as `<prefix>A_B`
    metric_prefix: str
    peering: str  # PEERS_GAUGE or CONNECTIONS
    listen: ListenStyle
    capabilities: frozenset[str]
    info_version_key: str  # the /debug/info section with {version, revision}
    # How a node behind a NAT without port forwarding is configured. None: it announces its own
    # address (`--nat=extip:`), as the Codex era does. Otherwise no extip, so that AutoNAT finds
    # out what it is (upstream runs AutoNAT only then), with these flags.
    autonat_flags: dict[str, str] | None = None

    def env(self, flag: str) -> str:
        """The environment name of a long CLI flag: `listen-port` -> `STORAGE_LISTEN_PORT`."""
        return self.env_prefix + flag.upper().replace("-", "_")

    def listen_env(self) -> dict[str, str]:
        """Where the node listens for libp2p: a fixed port, as the plan announces it (the Logos
        node picks a random one unless told)."""
        if self.listen == "ip-port":
            return {self.env("listen-ip"): "0.0.0.0", self.env("listen-port"): str(LISTEN_PORT)}
        return {
            self.env("listen-addrs"): f"/ip4/0.0.0.0/tcp/{LISTEN_PORT}",
            self.env("disc-port"): str(DISC_PORT),
        }


CODEX = Profile(
    name="codex",
    api_prefix="/api/codex/v1",
    env_prefix="CODEX_",
    metric_prefix="codex_",
    peering=PEERS_GAUGE,
    listen="addrs",
    capabilities=frozenset(),
    info_version_key="codex",
)
LOGOS_STORAGE = Profile(
    name="logos-storage",
    api_prefix="/api/storage/v1",
    env_prefix="STORAGE_",
    metric_prefix="storage_",
    peering=CONNECTIONS,
    listen="ip-port",
    capabilities=frozenset({CAP_CONNECTIONS, CAP_NAT_INFO, CAP_NAT_TRAVERSAL, CAP_KAD_DHT}),
    info_version_key="storage",
    # upstream's own NAT tests: one answer decides, a round every 5 s (defaults: 3, 3, 0.6, 2 min)
    autonat_flags={
        "nat-num-peers-to-ask": "1",
        "nat-max-queue-size": "1",
        "nat-min-confidence": "1.0",
        "nat-schedule-interval": "5s",
    },
)
PROFILES = {profile.name: profile for profile in (CODEX, LOGOS_STORAGE)}
DEFAULT_IMPL = CODEX.name

# Upstream files (repository @ commit) each profile fact was taken from.
SOURCES = {
    "codex: REST /api/codex/v1, CODEX_* env, /debug/info keys, table = discv5 routing table": (
        "logos-storage/logos-storage-nim codex/rest/api.nim, codex/conf.nim @6765beee (v0.2.5), observed"
    ),
    "logos-storage: REST /api/storage/v1": "logos-storage/logos-storage-nim storage/rest/api.nim @10bb4975",
    "logos-storage: STORAGE_* env (envVarsPrefix), --listen-ip/--listen-port, hidden --api-bindaddr": (
        "logos-storage/logos-storage-nim storage/conf.nim (PR #1409)"
    ),
    "logos-storage: /debug/info nat{...}, connections[{peerId, direct}]": (
        "logos-storage/logos-storage-nim PR #1417 (NAT traversal), storage/rest/api.nim"
    ),
    "logos-storage: AutoNAT client only without --nat=extip:, its nat-* flags": (
        "logos-storage/logos-storage-nim storage/storage.nim, storage/conf.nim;"
        " tests/integration/nat/node-entrypoint.sh @27836c4d (the flags of its own NAT tests)"
    ),
    "logos-storage: hidden --autonat-server (needs --nat=extip:); bootstrap nodes serve AutoNAT": (
        "logos-storage/logos-storage-nim storage/conf.nim, storage/storage.nim (PR #1417)"
    ),
    "logos-storage: STORAGE_NETWORK makes the entrypoint download a bootstrap list (exit 1 offline)": (
        "logos-storage/logos-storage-nim docker/docker-entrypoint.sh @d1f27154"
    ),
    "logos-storage: Kad-DHT with nim-libp2p's defaults (/ipfs/kad/1.0.0, k 20), manifests advertised": (
        "logos-storage/logos-storage-nim storage/discovery.nim, storage/blockexchange/engine/advertiser.nim"
        " @192b0f82"
    ),
    "logos-storage: kad_messages_*, kad_message_bytes_* by type, kad_routing_table_peers": (
        "vacp2p/nim-libp2p libp2p/protocols/kademlia/kademlia_metrics.nim (under -d:libp2p_kad_metrics)"
    ),
    "both: libp2p_peers gauge, total connected peers": "vacp2p/nim-libp2p libp2p/connmanager.nim @0081d3e5",
}


def flag_of(env_name: str) -> str:
    """The CLI flag an env name spells in either era: `STORAGE_API_PORT` -> `api-port`; a name
    with neither prefix is returned as it is."""
    for known in PROFILES.values():
        if env_name.startswith(known.env_prefix):
            return env_name.removeprefix(known.env_prefix).lower().replace("_", "-")
    return env_name


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise TestbedError(f"unknown implementation {name!r}: one of {', '.join(PROFILES)}") from None
