"""/debug/info in each era's shape, with the reference node's extras unless strict.

Codex era (nim-codex `codex/rest/api.nim` @ bd360322): id, addrs, repo, spr, announceAddresses,
`table` (the discv5 routing table) and `codex{version, revision, contracts}`. Logos era
(logos-storage-nim `storage/rest/json.nim` @ 309f5f68, `DebugInfo`): id, `addrs` (the announced
addresses when there are any, as the switch's), spr, libp2pPubKey, mixPubKey, `table` (the
Kad-DHT routing table: `localNode` and `nodes` of {peerId, addresses, lastSeen}; lastSeen in Unix
seconds here, upstream's format unconfirmed),
`storage{version, revision}`, `nat`, `connections` and privateQueries: no repo and no
announceAddresses. Extras, both eras: the Logos `nat` (with the AutoNAT evidence) and
`connections` in the Codex era too, our connected peers as `table.nodes`, and `relay`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codexref.era import NAT_KEYS, Era


@dataclass(frozen=True)
class NodeState:
    """What /debug/info reports, as the node knows it."""

    peer_id: str
    public_key_hex: str  # the raw libp2p public key (Logos era's libp2pPubKey)
    addrs: list[str]
    repo: str
    spr: str
    announce_addresses: list[str]
    reachable_addresses: list[str]  # announced and relayed: what the Logos era lists as `addrs`
    version: str
    revision: str
    table: dict[str, Any] | None  # {localNode, nodes}: the era's discv5 table, None without discv5
    dht_nodes: list[dict[str, Any]]  # the Logos era's Kad-DHT table: {peerId, addresses, lastSeen}
    nat: dict[str, Any]
    connections: list[dict[str, Any]]
    relay: dict[str, Any] | None  # our circuit relay client, if it has one


def render(state: NodeState, era: Era, strict: bool) -> dict[str, Any]:
    info = _logos_head(state) if era.logos_debug_info else _codex_head(state)
    info[era.version_key] = version_section(state, era)
    info["nat"] = state.nat
    info["connections"] = state.connections
    if era.logos_debug_info:
        info["privateQueries"] = False  # DHT queries over mix: we have no mix
    if state.relay is not None:
        info["relay"] = state.relay
    return upstream_only(info, era) if strict else info


def _codex_head(state: NodeState) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": state.peer_id,
        "addrs": state.addrs,
        "repo": state.repo,
        "spr": state.spr,
        "announceAddresses": state.announce_addresses,
    }
    if state.table is not None:
        info["table"] = state.table
    return info


def _logos_head(state: NodeState) -> dict[str, Any]:
    """Upstream lists the announced addresses as `addrs` (with a relayed address once its relay
    client holds a reservation) and its Kad-DHT routing table as `table`."""
    addrs = state.reachable_addresses or state.addrs
    return {
        "id": state.peer_id,
        "addrs": addrs,
        "spr": state.spr,
        "libp2pPubKey": state.public_key_hex,
        "mixPubKey": None,  # no mix protocol here
        "table": {
            "localNode": {"peerId": state.peer_id, "addresses": addrs, "lastSeen": None},
            "nodes": state.dht_nodes,
        },
    }


def version_section(state: NodeState, era: Era) -> dict[str, str]:
    section = {"version": state.version, "revision": state.revision}
    if era.marketplace:
        section["contracts"] = ""  # upstream: the marketplace contracts' revision; we have none
    return section


def upstream_only(info: dict[str, Any], era: Era) -> dict[str, Any]:
    """What upstream serves: its keys, its `nat` fields, and in the Codex era a routing table
    without the peers we list in it (upstream lists discv5 nodes; the reference node runs no
    discv5, so it has none)."""
    kept = {key: value for key, value in info.items() if key in era.debug_info_keys}
    if "nat" in kept:
        kept["nat"] = {key: kept["nat"][key] for key in NAT_KEYS}
    if "table" in kept and era.discv5:
        kept["table"] = {**kept["table"], "nodes": []}
    return kept
