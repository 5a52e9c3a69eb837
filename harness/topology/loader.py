"""Load and validate a topology YAML file. Every error names the file, the key path and the problem.

Validation finishes before anything is created, so a broken file never leaves resources behind. It
is bounded too: the file's size, the YAML's nesting and alias expansion, and the numbers of nodes,
relays and networks are limited before anything that grows faster than the file runs.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import TopologyError, excerpt
from harness.impl import PROFILES, flag_of
from harness.paths import TOPOLOGIES_DIR
from harness.topology.model import (
    HEALTHCHECK_INTERVAL_S,
    NAT_PROFILES,
    NETWORK_KINDS,
    NODE_KINDS,
    PEERING_MODES,
    PORT_MAPPING,
    RELAY_PROFILES,
    REPO_KINDS,
    STATUS_ROLES,
    TCP_CONGESTION,
    Link,
    Network,
    Node,
    Relay,
    Shaping,
    StatusPeer,
    Topology,
    added_services,
)
from harness.topology.plan import FIRST_HOST, SERVICE_PORTS, address_demand, host_capacity
from harness.topology.subnets import SUBNET_PREFIX

# Sizes: a topology is a small hand-written file; these bound the time and memory it can cost.
MAX_FILE_CHARS = 128 * 1024
MAX_YAML_DEPTH = 16  # nested mappings and sequences, aliases followed
MAX_YAML_NODES = 10_000  # scalars, mappings and sequences, aliases expanded (PyYAML: ~40 us each)
MAX_NODES = 200  # codex nodes
MAX_STATUS_PEERS = 100
MAX_RELAYS = 16
MAX_NETWORKS = 64  # the WAN and the LANs
MAX_IMAGE_CHARS = 512

# Ranges, inclusive
HEALTHCHECK_RANGE_S = (1, 86_400)
UDP_TIMEOUT_RANGE_S = TCP_TIMEOUT_RANGE_S = (1, 86_400)
QUOTA_RANGE_BYTES = (1, 2**50)  # up to 1 PiB
BLOCK_TTL_RANGE_S = (1, 3650 * 86_400)  # up to ten years
PORT_RANGE = (1, 65_535)
LINK_DELAY_MAX_MS = 60_000
RATE_MAX_BIT_S = 100 * 10**9

LOG_LEVELS = ("trace", "debug", "info", "notice", "warn", "error", "fatal")
# All patterns are used with fullmatch: `$` would also match before a trailing newline.
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
FLAG_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){0,8}")
BYTES_RE = re.compile(r"([0-9]{1,40}) *(?:([kKmMgGtT])i?[bB]?)?")
DURATION_RE = re.compile(r"([0-9]{1,40})([smhd]?)")
RATE_RE = re.compile(r"([0-9]{1,40}(?:\.[0-9]{1,40})?)(bit|kbit|mbit|gbit)")
LOG_LEVEL_RE = re.compile(rf"(?i:{'|'.join(LOG_LEVELS)})(;[A-Za-z0-9_.,:; -]*)?")
# Control characters and line breaks: in an env file they would end the line or cut the value.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
BYTE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}

# Docker's image reference grammar (distribution/reference): [domain/]path[:tag][@digest]
_ALNUM = r"[a-z0-9]+"
_PATH_PART = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
IMAGE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)

REFERENCE = "reference"  # `impl: reference`: the reference node (or peer) built here
TOP_KEYS = {
    "name", "description", "networks", "nodes", "peering", "healthcheck_interval", "seed", "tcp_congestion"
}  # fmt: skip
SEED_RANGE = (0, 2**32 - 1)
NETWORK_KEYS = {"kind", "nat", "hairpin", "udp_timeout", "tcp_timeout", "pcap", "port_mapping"}
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
    "flags",
}
RELAY_KEYS = {"kind", "profile", "env"}
STATUS_KEYS = {"kind", "role", "codex", "network", "relay", "storage", "impl", "image", "env"}
EMBEDDED_ONLY_KEYS = ("network", "relay", "storage")  # what a peer paired with a separate node has not
SHAPING_KEYS = {"rate", "delay_ms", "jitter_ms", "loss_pct", "reorder_pct"}
LINK_KEYS = SHAPING_KEYS | {"up", "down"}  # top-level keys: both directions; up/down: one
TOO_MANY_NODES = f"more than {MAX_YAML_NODES} YAML nodes (values, lists, mappings), aliases expanded"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: keys are unique scalars (PyYAML keeps the last of two equal
    keys, and a list as a key raises), nesting is limited, and aliases cannot expand to more than
    MAX_YAML_NODES nodes (a "billion laughs" document is a few lines long)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0  # stops a long flat document early; aliases are counted expanded later

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                problem = f"nested deeper than {MAX_YAML_DEPTH} levels"
                raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)
            if self._composed > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(None, None, TOO_MANY_NODES, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, 1, {}, set())
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            data = super().construct_object(node, deep=deep)
        except ValueError as exc:  # a scalar PyYAML cannot convert: 2001-13-45, a 5,000-digit number
            problem = f"cannot read {excerpt(node.value)}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None
        if isinstance(data, int) and data.bit_length() > 64:  # hex and octal escape Python's digit limit
            problem = "a whole number must fit in 64 bits"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return data


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _expanded_size(node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]], open_: set[int]) -> int:
    """The nodes under `node` with aliases expanded, counted on the composed graph (each node once:
    linear in the document), and refused past the limits. `sizes` holds (nodes, levels) per node.
    An alias only refers back, to a node counted already or an open ancestor, so the recursion is
    as deep as the composed document: at most MAX_YAML_DEPTH."""
    key = id(node)
    if key in open_:
        raise yaml.composer.ComposerError(None, None, "an alias refers to its own anchor", node.start_mark)
    if key not in sizes:
        open_.add(key)
        size, levels = 1, 1
        for child in _children(node):
            size += _expanded_size(child, depth + 1, sizes, open_)
            levels = max(levels, 1 + sizes[id(child)][1])
        open_.discard(key)
        sizes[key] = (size, levels)
    size, levels = sizes[key]
    if size > MAX_YAML_NODES:
        raise yaml.composer.ComposerError(None, None, TOO_MANY_NODES, node.start_mark)
    if depth + levels - 1 > MAX_YAML_DEPTH:
        problem = f"aliases nest deeper than {MAX_YAML_DEPTH} levels"
        raise yaml.composer.ComposerError(None, None, problem, node.start_mark)
    return size


def _construct_mapping(loader: _BoundedLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or a mapping", key_node.start_mark
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {excerpt(key)} (first at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def resolve_path(name_or_path: str | Path, folder: Path = TOPOLOGIES_DIR) -> Path:
    """`basic` means compose/topologies/basic.yaml (`folder`/basic.yaml); anything else is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return folder / f"{name_or_path}.yaml"


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

    def keys(self, mapping: dict, allowed: set[str], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key)[:64], sorted(allowed), n=1)
                extra = (
                    f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                )
                raise self.fail(f"{path}.{key}" if path else str(key), "unknown key" + extra)

    def byte_size(
        self, value: Any, bounds: tuple[int, int], example: str, bounds_text: str, path: str
    ) -> tuple[int, str]:
        """A byte count (`31457280`, `30MiB`, `1GiB`) within `bounds`: (bytes, as written)."""
        match = self.matches(value, BYTES_RE, f"a byte size like {example}", path)
        size = int(match[1]) * BYTE_UNITS[(match[2] or "").lower()]
        self.in_range(size, bounds, match[0], bounds_text, path)
        return size, match[0]

    def count(self, count: int, limit: int, what: str, path: str) -> None:
        if count > limit:
            raise self.fail(path, f"declares {count} {what}; the limit is {limit}")

    def whole(self, value: Any, bounds: tuple[int, int], what: str, path: str) -> int:
        low, high = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(path, f"must be {what} from {low} to {high}; got {excerpt(value)}")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {excerpt(value)}")
        return value

    def choice(self, value: Any, options: tuple[str, ...], path: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise self.fail(path, f"must be one of {', '.join(options)}; got {excerpt(value)}")
        return value

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise self.fail(
                path, f"name {excerpt(value)} must match {NAME_RE.pattern} (lowercase, digits, dashes)"
            )
        return value

    def matches(self, value: Any, pattern: re.Pattern, what: str, path: str) -> re.Match:
        match = pattern.fullmatch(value) if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            match = pattern.fullmatch(str(value))
        if match is None:
            raise self.fail(path, f"{excerpt(value)} is not {what}")
        return match

    def in_range(
        self, amount: float, bounds: tuple[float, float], given: str, allowed: str, path: str
    ) -> None:
        low, high = bounds
        if not low <= amount <= high:
            raise self.fail(path, f"{excerpt(given)} is out of range: {allowed}")


# The public name of the accessors, for files that hold topology parts (harness/experiments/repro's
# scenarios): they subclass it, and their `fail` decides the error class and the key path.
Checker = _Checker


def _load_network(check: _Checker, name: str, raw: Any) -> Network:
    path = f"networks.{name}"
    check.name(name, path)
    data = check.mapping(raw if raw is not None else {}, path)
    check.keys(data, NETWORK_KEYS, path)
    kind = check.choice(data.get("kind", "wan"), NETWORK_KINDS, f"{path}.kind")
    if kind == "wan":
        for key in ("nat", "hairpin", "udp_timeout", "tcp_timeout", "pcap", "port_mapping"):
            if key in data:
                raise check.fail(f"{path}.{key}", "only a lan has a NAT; the wan is the public side")
        return Network(name=name, kind=kind)
    if "nat" not in data:
        raise check.fail(f"{path}.nat", f"is required for a lan (one of {', '.join(NAT_PROFILES)})")
    nat = check.choice(data["nat"], NAT_PROFILES, f"{path}.nat")
    hairpin = check.flag(data.get("hairpin", False), f"{path}.hairpin")
    pcap = check.flag(data.get("pcap", False), f"{path}.pcap")
    if hairpin and (problem := hairpin_problem(nat)):
        raise check.fail(f"{path}.hairpin", problem)
    timeout = data.get("udp_timeout", 10 if nat == "short-udp-timeout" else None)
    if timeout is not None:
        check.whole(timeout, UDP_TIMEOUT_RANGE_S, "a whole number of seconds", f"{path}.udp_timeout")
    tcp_timeout = data.get("tcp_timeout")
    if tcp_timeout is not None:
        check.whole(tcp_timeout, TCP_TIMEOUT_RANGE_S, "a whole number of seconds", f"{path}.tcp_timeout")
    port_mapping = data.get("port_mapping")
    if port_mapping is not None:
        port_mapping = check.choice(port_mapping, PORT_MAPPING, f"{path}.port_mapping")
        if nat in FORWARDING_PROFILES:
            raise check.fail(
                f"{path}.port_mapping", f"{nat} forwards by itself already: give a masquerading profile"
            )
    return Network(
        name=name,
        kind=kind,
        nat=nat,
        hairpin=hairpin,
        udp_timeout=timeout,
        tcp_timeout=tcp_timeout,
        pcap=pcap,
        port_mapping=port_mapping,
    )


FORWARDING_PROFILES = ("full-cone", "restricted-cone", "port-forward")  # DNAT of their own


def hairpin_problem(nat: str | None) -> str | None:
    """Why a LAN behind this NAT profile cannot hairpin; None when it can."""
    if nat in FORWARDING_PROFILES:
        return None
    return f"needs a profile that forwards to a LAN host, not {nat}"


def parse_link(check: Checker, raw: Any, path: str) -> Link:
    """A `link:` mapping at `path` (a node's, or a scenario's `links:` entry), by the same rules."""
    return _load_link(check, raw, path)


def _load_link(check: _Checker, raw: Any, path: str) -> Link:
    """`link:` keys shape both directions; `up:` (what the node sends) and `down:` (what it
    receives) override them, key by key, for one direction."""
    data = check.mapping(raw, path)
    check.keys(data, LINK_KEYS, path)
    if not data:
        raise check.fail(path, f"give at least one of {', '.join(sorted(LINK_KEYS))}")
    both = {key: value for key, value in data.items() if key in SHAPING_KEYS}
    directions = {}
    for direction in ("up", "down"):
        own = check.mapping(data.get(direction, {}), f"{path}.{direction}")
        check.keys(own, SHAPING_KEYS, f"{path}.{direction}")
        directions[direction] = _load_shaping(check, both, own, path, f"{path}.{direction}")
    return Link(**directions)


def _load_shaping(check: _Checker, both: dict, own: dict, both_path: str, own_path: str) -> Shaping:
    """One direction's shaping: its own keys, else the link's; errors name where a value was given."""
    data = {**both, **own}

    def where(key: str) -> str:
        return f"{own_path if key in own else both_path}.{key}"

    rate = None
    if "rate" in data:
        match = check.matches(data["rate"], RATE_RE, "a tc rate like 8mbit", where("rate"))
        bits = float(match[1]) * RATE_UNITS[match[2]]
        check.in_range(bits, (1, RATE_MAX_BIT_S), match[0], "more than 0, at most 100gbit", where("rate"))
        rate = match[0]

    def number(key: str, top: float) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            raise check.fail(where(key), f"must be a number from 0 to {top}, got {excerpt(value)}")
        return value

    delay, jitter = number("delay_ms", LINK_DELAY_MAX_MS), number("jitter_ms", LINK_DELAY_MAX_MS)
    if jitter and not delay:
        raise check.fail(where("jitter_ms"), "needs delay_ms")
    return Shaping(
        rate,
        int(delay) if delay is not None else None,
        int(jitter) if jitter else None,
        number("loss_pct", 100),
        number("reorder_pct", 100),
    )


def image_reference_problem(image: Any) -> str | None:
    """Why `image` is not a docker image reference; None when it is one."""
    what = "a docker image reference like codexstorage/nim-codex:0.2.5"
    match = IMAGE_RE.fullmatch(image) if isinstance(image, str) and len(image) <= MAX_IMAGE_CHARS else None
    if match is None:
        return f"{excerpt(image)} is not {what}"
    if len(match["name"]) > 255:
        return "an image name (before its tag) has at most 255 characters"
    return None


def _load_image(check: _Checker, data: dict, path: str) -> str | None:
    """`image: <ref>` (an upstream image), or nothing: the reference one, built here."""
    if "impl" in data and "image" in data and data["impl"] == REFERENCE:
        raise check.fail(path, "impl: reference means the reference node, which image: replaces: give one")
    if "image" not in data:
        return None
    if problem := image_reference_problem(data["image"]):
        raise check.fail(f"{path}.image", problem)
    return data["image"]


def _load_impl(check: _Checker, data: dict, path: str) -> str | None:
    """`impl:` the contract a storage node serves (codex or logos-storage); `reference`, the
    older spelling of "the reference node", chooses none (the reference node's default)."""
    if "impl" not in data:
        return None
    impl = check.choice(data["impl"], (*PROFILES, REFERENCE), f"{path}.impl")
    return None if impl == REFERENCE else impl


def _env_value(check: _Checker, value: Any, path: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, str | int | float):
        raise check.fail(
            path, f"must be a scalar, got {type(value).__name__} (give a string, number or boolean)"
        )
    text = str(value)
    if CONTROL_RE.search(text):
        raise check.fail(path, f"{excerpt(text)} has a line break or control character (say, NUL)")
    if "$" in text:
        # compose v1 takes env files literally, v2 interpolates them: the same file would differ
        raise check.fail(path, "must not contain '$' (compose v1 and v2 read it differently)")
    return text


def _load_env(check: _Checker, data: dict, kind: str, path: str) -> dict[str, str]:
    raw = check.mapping(data.get("env", {}), f"{path}.env")
    env = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
            raise check.fail(f"{path}.env.{key}", "environment names must be UPPER_CASE identifiers")
        env[key] = _env_value(check, value, f"{path}.env.{key}")
    _check_ports(check, env, kind, f"{path}.env")
    return env


def _check_option_name(check: _Checker, key: object, where: str, what: str) -> None:
    """A storage node's option, named as its long CLI flag without the dashes."""
    if not isinstance(key, str) or not FLAG_RE.fullmatch(key):
        raise check.fail(
            where, f"{what} is an upstream long CLI option without its dashes, like block-retries"
        )


def _load_flags(check: _Checker, data: dict, path: str) -> dict[str, str]:
    """`flags:` upstream's long CLI options by name, era-neutral: the plan spells each one as the
    node's implementation reads it (CODEX_BLOCK_RETRIES or STORAGE_BLOCK_RETRIES)."""
    raw = check.mapping(data.get("flags", {}), f"{path}.flags")
    flags = {}
    for key, value in raw.items():
        where = f"{path}.flags.{excerpt(key)}"
        _check_option_name(check, key, where, "a flag")
        if key.endswith("-port"):
            raise check.fail(
                where, "ports move with env (CODEX_API_PORT or STORAGE_API_PORT), where they are checked"
            )
        flags[key] = _env_value(check, value, where)
    return flags


def _as_int(text: str) -> int | str:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else text


def _check_ports(check: _Checker, env: dict[str, str], kind: str, path: str) -> None:
    """Every `*_PORT` variable is a port, and no two ports of a service are the same."""
    moved = {
        key: check.whole(_as_int(value), PORT_RANGE, "a port number", f"{path}.{key}")
        for key, value in env.items()
        if key.endswith("_PORT")
    }
    # A storage node's ports go by flag, whichever era's prefix spells it.
    moved_ports = {"--" + flag_of(key) if kind == "codex" else key for key in moved}
    owners = {port: owner for owner, port in SERVICE_PORTS[kind].items() if owner not in moved_ports}
    for key, port in moved.items():
        if port in owners:
            raise check.fail(f"{path}.{key}", f"port {port} is also {owners[port]}: a service's ports differ")
        owners[port] = key


def _load_status_peer(
    check: _Checker, name: str, data: dict, nodes: dict[str, Node], networks: dict[str, Network], wan: str
) -> StatusPeer:
    path = f"nodes.{name}"
    check.keys(data, STATUS_KEYS, path)
    if "role" not in data:
        raise check.fail(f"{path}.role", "is required for a status peer")
    role = check.choice(data["role"], STATUS_ROLES, f"{path}.role")
    if "impl" in data:  # a status peer is the reference one or a status-backend image
        check.choice(data["impl"], (REFERENCE,), f"{path}.impl")
    codex = _load_separate_node(check, data, nodes, networks, path)
    network = nodes[codex].network if codex else check.name(data.get("network", wan), f"{path}.network")
    if network not in networks:
        raise check.fail(f"{path}.network", f"undefined network {network!r} (defined: {', '.join(networks)})")
    if networks[network].nat in FORWARDING_PROFILES:
        raise check.fail(
            f"{path}.network",
            f"{network!r} forwards its ports to one storage node ({networks[network].nat}); "
            "put status peers on the WAN or behind a NAT without forwarding",
        )
    return StatusPeer(
        name=name,
        role=role,
        network=network,
        codex=codex,
        image=_load_image(check, data, path),
        env=_load_env(check, data, "status", path),
        storage=_load_storage_config(check, data, f"{path}.storage"),
        relay=check.name(data["relay"], f"{path}.relay") if "relay" in data else None,
    )


def _load_separate_node(
    check: _Checker, data: dict, nodes: dict[str, Node], networks: dict[str, Network], path: str
) -> str | None:
    """`codex:`, the separate storage node of the proof-of-concept form, or None (embedded)."""
    if "codex" not in data:
        return None
    codex = check.name(data["codex"], f"{path}.codex")
    if codex not in nodes:
        raise check.fail(f"{path}.codex", f"names {codex!r}, which is not a codex node")
    for key in EMBEDDED_ONLY_KEYS:
        if key in data:
            raise check.fail(
                f"{path}.{key}",
                f"is for an embedded storage node; this peer uses {codex!r} (sits on its network, "
                "uses its config): drop codex: to embed the storage",
            )
    if networks[nodes[codex].network].kind != "wan":
        raise check.fail(
            f"{path}.codex",
            "a separate storage node behind a NAT is not supported: drop codex: to embed the storage",
        )
    return codex


def _load_storage_config(check: _Checker, data: dict, path: str) -> dict:
    """`storage:`, an embedded node's libstorage config: the node's long CLI option names
    (status-go passes them as JSON keys), each a string, number, true/false or a list of strings."""
    raw = check.mapping(data.get("storage", {}), path)
    config = {}
    for key, value in raw.items():
        where = f"{path}.{excerpt(key)}"
        _check_option_name(check, key, where, "a key")
        if key.endswith("-port") or key == "data-dir":
            raise check.fail(where, "the testbed chooses the embedded node's ports and data dir")
        scalar = (str, int, bool)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = list(value)
        elif isinstance(value, scalar) and not isinstance(value, float):
            config[key] = value
        else:
            raise check.fail(
                where, f"must be a string, a number, true/false or a list of strings, got {excerpt(value)}"
            )
    return config


def _load_relay(check: _Checker, name: str, data: dict) -> Relay:
    path = f"nodes.{name}"
    check.keys(data, RELAY_KEYS, path)
    profile = check.choice(data.get("profile", "default"), RELAY_PROFILES, f"{path}.profile")
    return Relay(name=name, profile=profile, env=_load_env(check, data, "relay", path))


def _load_quota(check: _Checker, data: dict, path: str) -> str | None:
    if "storage_quota" not in data:
        return None
    example = "1073741824, 512MiB or 20GiB"
    return check.byte_size(data["storage_quota"], QUOTA_RANGE_BYTES, example, "1 byte to 1 PiB", path)[1]


def _load_ttl(check: _Checker, data: dict, path: str) -> str | None:
    if "block_ttl" not in data:
        return None
    match = check.matches(data["block_ttl"], DURATION_RE, "a duration like 3600, 90m or 30d", path)
    seconds = int(match[1]) * DURATION_UNITS[match[2]]
    check.in_range(seconds, BLOCK_TTL_RANGE_S, match[0], "1 second to 3650 days", path)
    return match[0]


def _load_peers(check: _Checker, data: dict, path: str) -> tuple[str, ...]:
    peers = data.get("peers", [])
    if not isinstance(peers, list):
        raise check.fail(path, "must be a list of node names")
    check.count(len(peers), MAX_NODES, "peers", path)
    seen = set()
    for i, peer in enumerate(peers):
        if check.name(peer, f"{path}[{i}]") in seen:
            raise check.fail(f"{path}[{i}]", f"names {peer!r} twice")
        seen.add(peer)
    return tuple(peers)


def _load_node(
    check: _Checker, name: str, data: dict, networks: dict[str, Network], default_net: str
) -> Node:
    path = f"nodes.{name}"
    check.keys(data, NODE_KEYS, path)
    network = check.name(data.get("network", default_net), f"{path}.network")
    if network not in networks:
        raise check.fail(f"{path}.network", f"undefined network {network!r} (defined: {', '.join(networks)})")
    level = data.get("log_level")
    if level is not None and not (isinstance(level, str) and LOG_LEVEL_RE.fullmatch(level)):
        raise check.fail(
            f"{path}.log_level",
            f"must be one of {', '.join(LOG_LEVELS)} (then ;<topic levels>, if any); got {excerpt(level)}",
        )
    return Node(
        name=name,
        kind=data["kind"],
        network=network,
        image=_load_image(check, data, path),
        impl=_load_impl(check, data, path),
        storage_quota=_load_quota(check, data, f"{path}.storage_quota"),
        block_ttl=_load_ttl(check, data, f"{path}.block_ttl"),
        log_level=level,
        repo_kind=check.choice(data["repo_kind"], REPO_KINDS, f"{path}.repo_kind")
        if "repo_kind" in data
        else None,
        env=_load_env(check, data, "codex", path),
        flags=_load_flags(check, data, path),
        peers=_load_peers(check, data, f"{path}.peers"),
        link=_load_link(check, data["link"], f"{path}.link") if "link" in data else None,
        relay=check.name(data["relay"], f"{path}.relay") if "relay" in data else None,
    )


def _read_yaml(check: _Checker, text: str) -> Any:
    if len(text) > MAX_FILE_CHARS:
        raise check.fail("", f"the file has {len(text)} characters; the limit is {MAX_FILE_CHARS}")
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise check.fail("", f"invalid YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise check.fail("", f"invalid YAML: {exc}") from None


def _load_networks(check: _Checker, data: dict) -> dict[str, Network]:
    raw = check.mapping(data.get("networks", {"wan": {"kind": "wan"}}), "networks")
    check.count(len(raw), MAX_NETWORKS, "networks", "networks")
    networks = {n: _load_network(check, n, v) for n, v in raw.items()}
    wans = [n.name for n in networks.values() if n.kind == "wan"]
    if len(wans) != 1:
        raise check.fail("networks", f"exactly one network of kind wan is needed, found {len(wans)}")
    routers: dict[str, str] = {}
    for network in networks.values():
        if network.cgn and network.carrier in networks:
            raise check.fail(
                f"networks.{network.carrier}", f"is the name of the carrier network LAN {network.name!r} gets"
            )
        for router in network.routers():
            if router in routers:
                owner = routers[router]
                raise check.fail(f"networks.{network.name}", f"its router {router!r} is LAN {owner!r}'s too")
            routers[router] = network.name
    return networks


def _node_kinds(check: _Checker, data: dict, networks: dict[str, Network]) -> dict[str, tuple[str, dict]]:
    """Each node's kind and mapping, with the per-kind limits checked before any node is loaded."""
    if "nodes" not in data:
        raise check.fail("nodes", "is required: a mapping of node name -> node")
    raw_nodes = check.mapping(data["nodes"], "nodes")
    if not raw_nodes:
        raise check.fail("nodes", "declares no nodes")
    added = added_services(networks.values())
    kinds = {}
    for node_name, raw_node in raw_nodes.items():
        path = f"nodes.{node_name}"
        check.name(node_name, path)
        if node_name in added:
            raise check.fail(path, f"is the name of a service the testbed adds ({', '.join(added)})")
        node_data = check.mapping(raw_node, path)
        if "kind" not in node_data:
            raise check.fail(f"{path}.kind", f"is required (one of {', '.join(NODE_KINDS)})")
        kinds[node_name] = (check.choice(node_data["kind"], NODE_KINDS, f"{path}.kind"), node_data)
    counts = Counter(kind for kind, _ in kinds.values())
    check.count(counts["codex"], MAX_NODES, "codex nodes", "nodes")
    check.count(counts["status"], MAX_STATUS_PEERS, "status peers", "nodes")
    check.count(counts["relay"], MAX_RELAYS, "relays", "nodes")
    return kinds


def _check_references(check: _Checker, topology: Topology) -> None:
    nodes, networks = topology.nodes, topology.networks
    for node in nodes.values():
        if node.relay is not None and node.relay not in topology.relays:
            raise check.fail(f"nodes.{node.name}.relay", f"names {node.relay!r}, which is not a relay node")
        for i, peer in enumerate(node.peers):
            if peer not in nodes or peer == node.name:
                what = "itself" if peer == node.name else f"undefined node {peer!r}"
                raise check.fail(f"nodes.{node.name}.peers[{i}]", f"names {what}")
    paired = Counter(peer.codex for peer in topology.status.values() if peer.codex)
    for peer in topology.status.values():
        if peer.relay is not None and peer.relay not in topology.relays:
            raise check.fail(f"nodes.{peer.name}.relay", f"names {peer.relay!r}, which is not a relay node")
        if peer.codex and paired[peer.codex] > 1:
            raise check.fail(
                f"nodes.{peer.name}.codex", f"{peer.codex!r} is already paired with another status peer"
            )
    used = {peer.network for peer in [*nodes.values(), *topology.status.values()]}
    for lan in (n for n in networks.values() if n.kind == "lan" and n.name not in used):
        raise check.fail(f"networks.{lan.name}", "a lan needs at least one node behind its router")


def _check_capacity(check: _Checker, topology: Topology) -> None:
    """make_plan hands out addresses from .10 up: refuse what a network's /24 cannot hold, before
    any subnet is reserved."""
    room = host_capacity(SUBNET_PREFIX)
    for network, needed in address_demand(topology).items():
        if needed > room:
            raise check.fail(
                f"networks.{network}",
                f"needs {needed} addresses (nodes, status peers, the Waku fleet node, relays, routers, "
                f"the NAT referee); a /{SUBNET_PREFIX} has {room} from .{FIRST_HOST} up",
            )


def load_description(check: Checker, data: dict) -> str:
    description = data.get("description", "")
    if not isinstance(description, str):
        raise check.fail("description", f"must be a string, got {type(description).__name__}")
    if CONTROL_RE.search(description.replace("\n", "").replace("\t", "")):
        raise check.fail("description", "has a control character (say, NUL)")
    return description


def parse(text: str, file: Path) -> Topology:
    check = _Checker(file)
    return parse_data(check, _read_yaml(check, text))


def parse_data(check: Checker, document: Any) -> Topology:
    """A topology from a document read already (a scenario's inline `topology:`): errors go through
    `check`, which names the file and where in it the topology sits."""
    data = check.mapping(document, "")
    check.keys(data, TOP_KEYS, "")
    file = check.file
    name = check.name(data.get("name", file.stem), "name")
    networks = _load_networks(check, data)
    kinds = _node_kinds(check, data, networks)
    wan = next(n.name for n in networks.values() if n.kind == "wan")
    nodes = {n: _load_node(check, n, d, networks, wan) for n, (k, d) in kinds.items() if k == "codex"}
    if not any(kind in ("codex", "status") for kind, _ in kinds.values()):
        raise check.fail("nodes", "declares no storage node (a codex node, or a status peer embedding one)")
    status = {
        n: _load_status_peer(check, n, d, nodes, networks, wan)
        for n, (k, d) in kinds.items()
        if k == "status"
    }
    relays = {n: _load_relay(check, n, d) for n, (k, d) in kinds.items() if k == "relay"}
    interval = data.get("healthcheck_interval", HEALTHCHECK_INTERVAL_S)
    seconds = "a whole number of seconds"
    topology = Topology(
        name=name,
        source=file,
        networks=networks,
        nodes=nodes,
        description=load_description(check, data),
        peering=check.choice(data.get("peering", "mesh"), PEERING_MODES, "peering"),
        healthcheck_interval=check.whole(interval, HEALTHCHECK_RANGE_S, seconds, "healthcheck_interval"),
        status=status,
        relays=relays,
        seed=check.whole(data.get("seed", 0), SEED_RANGE, "a whole number", "seed"),
        tcp_congestion=(
            check.choice(data["tcp_congestion"], TCP_CONGESTION, "tcp_congestion")
            if "tcp_congestion" in data
            else None
        ),
    )
    _check_references(check, topology)
    _check_capacity(check, topology)
    check_relay_clients(topology, check)
    return topology


def check_relay_clients(topology: Topology, check: Checker | None = None) -> None:
    """Only the reference node reserves on a testbed relay (its --relay-info-url client); an
    upstream image finds relays itself. Checked again once a build is selected for the nodes.
    Errors go through `check` (by default: the topology's file)."""
    check = check or _Checker(topology.source)
    for node in topology.nodes.values():
        if node.relay and node.image is not None:
            raise check.fail(
                f"nodes.{node.name}.relay",
                f"reserving on a testbed relay is the reference node's client; {excerpt(node.image)} "
                "finds its relays itself (give the node no relay:, or no image:)",
            )
    for peer in topology.status.values():
        if peer.relay and peer.image is not None:
            raise check.fail(
                f"nodes.{peer.name}.relay",
                f"reserving on a testbed relay is the reference node's client; {excerpt(peer.image)} "
                "embeds a storage node that finds its relays itself (give the peer no relay:, or no image:)",
            )


def read_document(check: Checker, missing: Callable[[], str]) -> Any:
    """The YAML document in `check.file`, read bounded; `missing()` says why there is no such file."""
    try:
        with check.file.open() as stream:
            text = stream.read(MAX_FILE_CHARS + 1)  # enough to refuse an oversized file
    except FileNotFoundError:
        raise check.fail("", missing()) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise check.fail("", f"cannot read: {exc}") from None
    return _read_yaml(check, text)


def load(name_or_path: str | Path) -> Topology:
    check = _Checker(resolve_path(name_or_path))

    def missing() -> str:
        available = ", ".join(sorted(p.stem for p in TOPOLOGIES_DIR.glob("*.yaml")))
        return f"no such topology file (built-in topologies: {available})"

    return parse_data(check, read_document(check, missing))
