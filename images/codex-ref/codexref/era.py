"""The two upstream contracts the reference node can speak, as data.

Codex era: `codexstorage/nim-codex` images up to December 2025 (nim-codex bd360322). Logos era:
`logosstorage/logos-storage-nim` (2026; `storage/conf.nim`, `storage/rest/api.nim` @ 10bb4975).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Upstream's `nat` object of the Logos-era /debug/info (`NatDebugInfo`, storage/rest/json.nim).
NAT_KEYS = ("reachability", "clientMode", "relayRunning", "portMapping")


@dataclass(frozen=True)
class Era:
    name: str  # the value of `--impl`
    env_prefix: str  # confutils' envVarsPrefix, upper-cased, with its underscore
    api_prefix: str
    metric_prefix: str
    data_dir: str
    # Upstream's REST default: 127.0.0.1 in the Codex era; in the Logos era `--api-bindaddr` is
    # hidden and has no default, so the API is off unless it is given.
    api_bindaddr: str | None
    # discv5 over UDP (`--disc-port`): its endpoint opens the SPR, its routing table is
    # /debug/info's `table`. The Logos era runs Kad-DHT over the libp2p TCP connections instead.
    discv5: bool
    # `--listen-ip` + `--listen-port` (Logos, PR #1409) instead of `--listen-addrs` multiaddrs.
    listen_by_port: bool
    # /debug/info in the Logos shape (`DebugInfo`, storage/rest/json.nim): the announced addresses
    # as `addrs`, the public keys, a Kad-DHT table; not the Codex era's `announceAddresses`/`repo`.
    logos_debug_info: bool
    # The Codex era's marketplace: its routes answer 503 without persistence, and /debug/info's
    # version section carries the contracts' revision.
    marketplace: bool
    version_key: str  # /debug/info's version section
    debug_info_keys: tuple[str, ...]  # exactly what upstream's /debug/info holds

    def env_name(self, flag: str) -> str:
        """`--listen-port` -> `STORAGE_LISTEN_PORT`: upstream's env fallback for a flag."""
        return self.env_prefix + flag.upper().replace("-", "_")


CODEX = Era(
    name="codex",
    env_prefix="CODEX_",
    api_prefix="/api/codex/v1",
    metric_prefix="codex_",
    data_dir="~/.cache/codex",
    api_bindaddr="127.0.0.1",
    discv5=True,
    listen_by_port=False,
    logos_debug_info=False,
    marketplace=True,
    version_key="codex",
    debug_info_keys=("id", "addrs", "repo", "spr", "announceAddresses", "table", "codex"),
)

LOGOS = Era(
    name="logos-storage",
    env_prefix="STORAGE_",
    api_prefix="/api/storage/v1",
    metric_prefix="storage_",
    data_dir="~/.cache/storage",
    api_bindaddr=None,
    discv5=False,
    listen_by_port=True,
    logos_debug_info=True,
    marketplace=False,
    version_key="storage",
    # storage/rest/json.nim @ 309f5f68 (DebugInfo): no repo, no announceAddresses
    debug_info_keys=(
        "id",
        "addrs",
        "spr",
        "libp2pPubKey",
        "mixPubKey",
        "table",
        "storage",
        "nat",
        "connections",
        "privateQueries",
    ),
)

ERAS = {era.name: era for era in (CODEX, LOGOS)}


def from_environment(environ: Mapping[str, str]) -> Era:
    """The harness starts a node with either era's variables and nothing else to tell them apart:
    any `STORAGE_*` variable means the Logos era."""
    return LOGOS if any(name.startswith(LOGOS.env_prefix) for name in environ) else CODEX
