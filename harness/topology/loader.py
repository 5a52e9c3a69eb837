"""Load and validate a topology YAML file. Every error names the file, the key path and the problem.

Validation finishes before anything is created, so a broken file never leaves resources behind.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from harness.errors import TopologyError
from harness.paths import TOPOLOGIES_DIR
from harness.topology.model import (
    HEALTHCHECK_INTERVAL_S,
    NAT_PROFILES,
    NETWORK_KINDS,
    NODE_KINDS,
    PEERING_MODES,
    RELAY_PROFILES,
    REPO_KINDS,
    STATUS_ROLES,
    Link,
    Network,
    Node,
    Relay,
    StatusPeer,
    Topology,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
BYTES_RE = re.compile(r"^\d+\s*([kKmMgGtT]i?[bB]?)?$")
DURATION_RE = re.compile(r"^\d+[smhd]?$")
LOG_LEVELS = ("trace", "debug", "info", "notice", "warn", "error", "fatal")

TOP_KEYS = {"name", "description", "networks", "nodes", "peering", "healthcheck_interval"}
NETWORK_KEYS = {"kind", "nat", "hairpin", "udp_timeout", "pcap"}
NODE_KEYS = {
    "kind",
    "impl",
    "image",
    "network",
    "storage_quota",
    "block_ttl",
    "log_level",
    "repo_kind",
    "env",
    "peers",
    "link",
    "relay",
}
RELAY_KEYS = {"kind", "profile", "env"}
STATUS_KEYS = {"kind", "role", "codex", "impl", "image", "env"}
LINK_KEYS = {"rate", "delay_ms", "jitter_ms", "loss_pct"}
RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit)$")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a topology must not."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def resolve_path(name_or_path: str | Path) -> Path:
    """`basic` means compose/topologies/basic.yaml; anything else is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return TOPOLOGIES_DIR / f"{name_or_path}.yaml"


class _Checker:
    """Typed accessors that raise TopologyError with the file and key path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, path: str, problem: str) -> TopologyError:
        return TopologyError(self.file, path, problem)

    def mapping(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {type(value).__name__}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"must be a non-empty string, got {value!r}")
        return value

    def keys(self, mapping: dict, allowed: set[str], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                extra = (
                    f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                )
                raise self.fail(f"{path}.{key}" if path else str(key), "unknown key" + extra)

    def seconds(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(path, f"must be a whole number of seconds, got {value!r}")
        return value

    def choice(self, value: Any, options: tuple[str, ...], path: str) -> str:
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(options)}; got {value!r}")
        return value

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise self.fail(path, f"name {value!r} must match {NAME_RE.pattern} (lowercase, digits, dashes)")
        return value

    def matches(self, value: Any, pattern: re.Pattern, what: str, path: str) -> str:
        text = str(value)
        if isinstance(value, bool) or not pattern.match(text):
            raise self.fail(path, f"{value!r} is not {what}")
        return text


def _load_network(check: _Checker, name: str, raw: Any) -> Network:
    path = f"networks.{name}"
    check.name(name, path)
    data = check.mapping(raw if raw is not None else {}, path)
    check.keys(data, NETWORK_KEYS, path)
    kind = check.choice(data.get("kind", "wan"), NETWORK_KINDS, f"{path}.kind")
    if kind == "wan":
        for key in ("nat", "hairpin", "udp_timeout", "pcap"):
            if key in data:
                raise check.fail(f"{path}.{key}", "only a lan has a NAT; the wan is the public side")
        return Network(name=name, kind=kind)
    if "nat" not in data:
        raise check.fail(f"{path}.nat", f"is required for a lan (one of {', '.join(NAT_PROFILES)})")
    nat = check.choice(data["nat"], NAT_PROFILES, f"{path}.nat")
    hairpin, pcap = data.get("hairpin", False), data.get("pcap", False)
    for key, value in (("hairpin", hairpin), ("pcap", pcap)):
        if not isinstance(value, bool):
            raise check.fail(f"{path}.{key}", f"must be true or false, got {value!r}")
    if hairpin and nat not in ("full-cone", "restricted-cone", "port-forward"):
        raise check.fail(f"{path}.hairpin", f"needs a profile that forwards to a LAN host, not {nat}")
    timeout = data.get("udp_timeout", 10 if nat == "short-udp-timeout" else None)
    if timeout is not None:
        check.seconds(timeout, f"{path}.udp_timeout")
    return Network(name=name, kind=kind, nat=nat, hairpin=hairpin, udp_timeout=timeout, pcap=pcap)


def _load_link(check: _Checker, raw: Any, path: str) -> Link:
    data = check.mapping(raw, path)
    check.keys(data, LINK_KEYS, path)
    if not data:
        raise check.fail(path, f"give at least one of {', '.join(sorted(LINK_KEYS))}")
    rate = (
        check.matches(data["rate"], RATE_RE, "a tc rate like 8mbit", f"{path}.rate")
        if "rate" in data
        else None
    )

    def number(key: str, top: float) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            raise check.fail(f"{path}.{key}", f"must be a number from 0 to {top}, got {value!r}")
        return value

    delay, jitter = number("delay_ms", 60_000), number("jitter_ms", 60_000)
    if jitter and not delay:
        raise check.fail(f"{path}.jitter_ms", "needs delay_ms")
    return Link(
        rate,
        int(delay) if delay is not None else None,
        int(jitter) if jitter else None,
        number("loss_pct", 100),
    )


def _load_image(check: _Checker, data: dict, path: str) -> str | None:
    """`image: <ref>` (an upstream image) or `impl: reference` / nothing (the reference one)."""
    if "impl" in data and "image" in data:
        raise check.fail(path, "give either impl: reference or image: <ref>, not both")
    if "impl" in data:
        check.choice(data["impl"], ("reference",), f"{path}.impl")
    return check.string(data["image"], f"{path}.image") if "image" in data else None


def _load_env(check: _Checker, data: dict, path: str) -> dict[str, str]:
    env = check.mapping(data.get("env", {}), f"{path}.env")
    for key, value in env.items():
        if not isinstance(key, str) or not re.match(r"^[A-Z_][A-Z0-9_]*$", key):
            raise check.fail(f"{path}.env.{key}", "environment names must be UPPER_CASE identifiers")
        if isinstance(value, dict | list) or value is None:
            raise check.fail(f"{path}.env.{key}", f"must be a scalar, got {type(value).__name__}")
        if "$" in str(value):
            # compose v1 takes env files literally, v2 interpolates them: the same file would differ
            raise check.fail(
                f"{path}.env.{key}", "must not contain '$' (compose v1 and v2 read it differently)"
            )
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def _load_status_peer(check: _Checker, name: str, data: dict, nodes: dict[str, Node], networks) -> StatusPeer:
    path = f"nodes.{name}"
    check.keys(data, STATUS_KEYS, path)
    for key in ("role", "codex"):
        if key not in data:
            raise check.fail(f"{path}.{key}", "is required for a status peer")
    role = check.choice(data["role"], STATUS_ROLES, f"{path}.role")
    codex = data["codex"]
    if codex not in nodes:
        raise check.fail(f"{path}.codex", f"names {codex!r}, which is not a codex node")
    if networks[nodes[codex].network].kind != "wan":
        raise check.fail(
            f"{path}.codex", "status peers behind a NAT are not supported yet: pair with a WAN node"
        )
    return StatusPeer(
        name=name,
        role=role,
        codex=codex,
        image=_load_image(check, data, path),
        env=_load_env(check, data, path),
    )


def _load_relay(check: _Checker, name: str, data: dict) -> Relay:
    path = f"nodes.{name}"
    check.keys(data, RELAY_KEYS, path)
    profile = check.choice(data.get("profile", "default"), RELAY_PROFILES, f"{path}.profile")
    return Relay(name=name, profile=profile, env=_load_env(check, data, path))


def _load_node(
    check: _Checker, name: str, data: dict, networks: dict[str, Network], default_net: str
) -> Node:
    path = f"nodes.{name}"
    check.keys(data, NODE_KEYS, path)
    kind = data["kind"]
    image = _load_image(check, data, path)
    network = data.get("network", default_net)
    if network not in networks:
        raise check.fail(f"{path}.network", f"undefined network {network!r} (defined: {', '.join(networks)})")
    env = _load_env(check, data, path)

    def optional(key: str, pattern: re.Pattern, what: str) -> str | None:
        return check.matches(data[key], pattern, what, f"{path}.{key}") if key in data else None

    link = _load_link(check, data["link"], f"{path}.link") if "link" in data else None
    peers = data.get("peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise check.fail(f"{path}.peers", "must be a list of node names")
    level = data.get("log_level")
    if level is not None and str(level).split(";")[0].lower() not in LOG_LEVELS:
        raise check.fail(f"{path}.log_level", f"must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
    return Node(
        name=name,
        kind=kind,
        network=network,
        image=image,
        storage_quota=optional("storage_quota", BYTES_RE, "a byte size like 1073741824, 512MiB or 20GiB"),
        block_ttl=optional("block_ttl", DURATION_RE, "a duration like 3600, 90m or 30d"),
        log_level=str(level) if level is not None else None,
        repo_kind=check.choice(data["repo_kind"], REPO_KINDS, f"{path}.repo_kind")
        if "repo_kind" in data
        else None,
        env=env,
        peers=tuple(peers),
        link=link,
        relay=check.string(data["relay"], f"{path}.relay") if "relay" in data else None,
    )


def parse(text: str, file: Path) -> Topology:
    check = _Checker(file)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise check.fail("", f"invalid YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise check.fail("", f"invalid YAML: {exc}") from None
    data = check.mapping(raw, "")
    check.keys(data, TOP_KEYS, "")
    name = check.name(data.get("name", file.stem), "name")
    raw_networks = check.mapping(data.get("networks", {"wan": {"kind": "wan"}}), "networks")
    networks = {n: _load_network(check, n, v) for n, v in raw_networks.items()}
    wans = [n.name for n in networks.values() if n.kind == "wan"]
    if len(wans) != 1:
        raise check.fail("networks", f"exactly one network of kind wan is needed, found {len(wans)}")
    if "nodes" not in data:
        raise check.fail("nodes", "is required: a mapping of node name -> node")
    raw_nodes = check.mapping(data["nodes"], "nodes")
    if not raw_nodes:
        raise check.fail("nodes", "declares no nodes")
    kinds = {}
    for node_name, raw_node in raw_nodes.items():
        check.name(node_name, f"nodes.{node_name}")
        node_data = check.mapping(raw_node, f"nodes.{node_name}")
        if "kind" not in node_data:
            raise check.fail(f"nodes.{node_name}.kind", f"is required (one of {', '.join(NODE_KINDS)})")
        kinds[node_name] = (check.choice(node_data["kind"], NODE_KINDS, f"nodes.{node_name}.kind"), node_data)
    nodes = {n: _load_node(check, n, d, networks, wans[0]) for n, (k, d) in kinds.items() if k == "codex"}
    status = {
        n: _load_status_peer(check, n, d, nodes, networks) for n, (k, d) in kinds.items() if k == "status"
    }
    if not nodes:
        raise check.fail("nodes", "declares no codex node")
    relays = {n: _load_relay(check, n, d) for n, (k, d) in kinds.items() if k == "relay"}
    for node in nodes.values():
        if node.relay is not None and node.relay not in relays:
            raise check.fail(f"nodes.{node.name}.relay", f"names {node.relay!r}, which is not a relay node")
    paired = [peer.codex for peer in status.values()]
    for peer in status.values():
        if paired.count(peer.codex) > 1:
            raise check.fail(
                f"nodes.{peer.name}.codex", f"{peer.codex!r} is already paired with another status peer"
            )
    for node in nodes.values():
        for i, peer in enumerate(node.peers):
            if peer not in nodes or peer == node.name:
                what = "itself" if peer == node.name else f"undefined node {peer!r}"
                raise check.fail(f"nodes.{node.name}.peers[{i}]", f"names {what}")
    for lan in (n for n in networks.values() if n.kind == "lan"):
        if not any(node.network == lan.name for node in nodes.values()):
            raise check.fail(f"networks.{lan.name}", "a lan needs at least one node behind its router")
    peering = check.choice(data.get("peering", "mesh"), PEERING_MODES, "peering")
    description = data.get("description", "")
    interval = check.seconds(data.get("healthcheck_interval", HEALTHCHECK_INTERVAL_S), "healthcheck_interval")
    return Topology(
        name=name,
        source=file,
        networks=networks,
        nodes=nodes,
        description=str(description),
        peering=peering,
        healthcheck_interval=interval,
        status=status,
        relays=relays,
    )


def load(name_or_path: str | Path) -> Topology:
    file = resolve_path(name_or_path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        available = ", ".join(sorted(p.stem for p in TOPOLOGIES_DIR.glob("*.yaml")))
        raise TopologyError(file, "", f"no such topology file (built-in topologies: {available})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(file, "", f"cannot read: {exc}") from None
    return parse(text, file)
