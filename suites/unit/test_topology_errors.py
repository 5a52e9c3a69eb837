"""Every kind of malformed topology gets its precise error (file, key path, problem) and creates nothing."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from harness.errors import PoolConfigError, PoolExhaustedError, TopologyError
from harness.net import plumbing
from harness.render.services import services
from harness.testbed import Testbed
from harness.topology import loader, subnets
from harness.topology.model import Link, Shaping
from harness.topology.plan import make_plan

IMAGES = {"codex-ref": "codex-img", "relay": "relay-img"}

VALID_NODE = "    kind: codex\n"

CASES = {
    "yaml-syntax": ("nodes:\n  codex-1: {kind: codex\n", "", "invalid YAML at line 3, column 1"),
    "top-not-mapping": ("- just\n- a list\n", "<top level>", "must be a mapping, got list"),
    "unknown-top-key": ("nodez: {}\n", "nodez", "unknown key (did you mean 'nodes'?)"),
    "missing-nodes": ("name: t\n", "nodes", "is required"),
    "empty-nodes": ("nodes: {}\n", "nodes", "declares no nodes"),
    "node-not-mapping": ("nodes:\n  codex-1: 3\n", "nodes.codex-1", "must be a mapping, got int"),
    "missing-kind": ("nodes:\n  codex-1: {impl: reference}\n", "nodes.codex-1.kind", "is required"),
    "bad-kind": (
        "nodes:\n  codex-1: {kind: ipfs}\n",
        "nodes.codex-1.kind",
        "must be one of codex, status, relay; got 'ipfs'",
    ),
    "node-key-typo": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    storage_qouta: 1GiB\n",
        "nodes.codex-1.storage_qouta",
        "unknown key (did you mean 'storage_quota'?)",
    ),
    "impl-and-image": (
        "nodes:\n  codex-1:\n"
        + VALID_NODE
        + "    impl: reference\n    image: codexstorage/nim-codex:latest\n",
        "nodes.codex-1",
        "impl: reference means the reference node, which image: replaces",
    ),
    "undefined-network": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    network: lan-a\n",
        "nodes.codex-1.network",
        "undefined network 'lan-a' (defined: wan)",
    ),
    "bad-quota": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    storage_quota: lots\n",
        "nodes.codex-1.storage_quota",
        "'lots' is not a byte size",
    ),
    "bad-node-name": ("nodes:\n  Codex_1: {kind: codex}\n", "nodes.Codex_1", "must match"),
    "duplicate-key": (
        "nodes:\n  codex-1: {kind: codex}\n  codex-1: {kind: codex}\n",
        "",
        "duplicate key 'codex-1' (first at line 2)",
    ),
    "two-wans": (
        "networks:\n  a: {kind: wan}\n  b: {kind: wan}\nnodes:\n  codex-1: {kind: codex}\n",
        "networks",
        "exactly one network of kind wan is needed, found 2",
    ),
    "env-not-scalar": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    env: {CODEX_X: [1, 2]}\n",
        "nodes.codex-1.env.CODEX_X",
        "must be a scalar, got list",
    ),
    "env-dollar": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    env: {CODEX_X: $HOME}\n",
        "nodes.codex-1.env.CODEX_X",
        "must not contain '$'",
    ),
    "lan-without-nat": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan}\nnodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.nat",
        "is required for a lan",
    ),
    "unknown-nat-profile": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: cone}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.nat",
        "must be one of port-forward, full-cone",
    ),
    "hairpin-without-forwarding": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: symmetric, hairpin: true}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.hairpin",
        "needs a profile that forwards to a LAN host, not symmetric",
    ),
    "port-mapping-unknown-mode": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: port-restricted, port_mapping: yes}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.port_mapping",
        "must be one of grant, refuse, broken",
    ),
    "port-mapping-forwarding-nat": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: full-cone, port_mapping: grant}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.port_mapping",
        "full-cone forwards by itself already",
    ),
    "port-mapping-on-the-wan": (
        "networks:\n  wan: {kind: wan, port_mapping: grant}\n",
        "networks.wan.port_mapping",
        "only a lan has a NAT",
    ),
    "pcap-not-bool": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: symmetric, pcap: yes please}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.pcap",
        "must be true or false, got 'yes please'",
    ),
    "pcap-on-wan": (
        "networks:\n  wan: {kind: wan, pcap: true}\nnodes:\n  a: {kind: codex}\n",
        "networks.wan.pcap",
        "only a lan has a NAT; the wan is the public side",
    ),
    "empty-lan": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: symmetric}\nnodes:\n  a: {kind: codex}\n",
        "networks.home",
        "a lan needs at least one node behind its router",
    ),
    "nat-on-wan": (
        "networks:\n  wan: {kind: wan, nat: symmetric}\nnodes:\n  a: {kind: codex}\n",
        "networks.wan.nat",
        "only a lan has a NAT",
    ),
    "bad-udp-timeout": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: port-restricted, udp_timeout: soon}\n"
        "nodes:\n  a: {kind: codex, network: home}\n",
        "networks.home.udp_timeout",
        "must be a whole number of seconds",
    ),
    "bad-healthcheck-interval": (
        "healthcheck_interval: 0\nnodes:\n  a: {kind: codex}\n",
        "healthcheck_interval",
        "must be a whole number of seconds from 1 to 86400; got 0",
    ),
    "bad-link-rate": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {rate: fast}\n",
        "nodes.codex-1.link.rate",
        "'fast' is not a tc rate like 8mbit",
    ),
    "link-loss-out-of-range": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {loss_pct: 140}\n",
        "nodes.codex-1.link.loss_pct",
        "must be a number from 0 to 100, got 140",
    ),
    "jitter-without-delay": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {jitter_ms: 5}\n",
        "nodes.codex-1.link.jitter_ms",
        "needs delay_ms",
    ),
    "bad-direction-key": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {up: {delay: 5}}\n",
        "nodes.codex-1.link.up",
        "delay",
    ),
    "direction-loss-out-of-range": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {delay_ms: 5, down: {loss_pct: 101}}\n",
        "nodes.codex-1.link.down.loss_pct",
        "must be a number from 0 to 100, got 101",
    ),
    "direction-jitter-without-delay": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    link: {up: {jitter_ms: 5}}\n",
        "nodes.codex-1.link.up.jitter_ms",
        "needs delay_ms",
    ),
    "bad-seed": (
        "seed: -1\nnodes:\n  a: {kind: codex}\n",
        "seed",
        "must be a whole number from 0 to 4294967295; got -1",
    ),
    "bad-tcp-congestion": (
        "tcp_congestion: vegas\nnodes:\n  a: {kind: codex}\n",
        "tcp_congestion",
        "must be one of reno, cubic, bbr",
    ),
    "bad-log-level": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    log_level: loud\n",
        "nodes.codex-1.log_level",
        "must be one of trace, debug",
    ),
}

# What trying the shipped topologies as a hostile user found (issue 16): each kind gets its error.
LAN = "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: symmetric}\n"
CGNAT = "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: cgnat}\n"
ONE_NODE = "nodes:\n  a: {kind: codex}\n"
BEHIND_HOME = "  b: {kind: codex, network: home}\n"
# "billion laughs": nine anchors, each ten aliases of the one before (10^9 strings expanded)
LAUGHS = (
    "[&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol], "
    + ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9))
    + "]"
)
# each anchor one level deeper than the one before: shallow as written, 20 levels expanded
ALIAS_CHAIN = "[&c0 [x], " + ", ".join(f"&c{i} [*c{i - 1}]" for i in range(1, 20)) + "]"


def node(settings: str) -> str:
    return "nodes:\n  a: {kind: codex, " + settings + "}\n"


def many(count: int, line: str) -> str:
    return "".join("  " + line.format(i=i) + "\n" for i in range(count))


CASES |= {
    "complex-key": ("nodes:\n  ? [a, b]\n  : {kind: codex}\n", "", "a key must be a plain value"),
    "network-is-a-list": (node("network: [wan]"), "nodes.a.network", "name ['wan'] must match"),
    "network-is-a-map": (node("network: {wan: 1}"), "nodes.a.network", "must match"),
    "codex-is-a-list": (
        ONE_NODE + "  s: {kind: status, role: owner, codex: [a]}\n",
        "nodes.s.codex",
        "name ['a'] must match",
    ),
    "codex-is-a-map": (
        ONE_NODE + "  s: {kind: status, role: owner, codex: {a: 1}}\n",
        "nodes.s.codex",
        "must",
    ),
    "nested-1000-deep": (
        "description: " + "[" * 1000 + "]" * 1000 + "\n" + ONE_NODE,
        "",
        "nested deeper than 16",
    ),
    "alias-bomb": (
        f"description: {LAUGHS}\n" + ONE_NODE,
        "",
        "more than 10000 YAML nodes (values, lists, mappings), aliases expanded",
    ),
    "alias-bomb-in-an-echoed-value": (f"name: {LAUGHS}\n" + ONE_NODE, "", "more than 10000 YAML nodes"),
    "too-long-a-list": (
        "description: [" + "a, " * 12_000 + "a]\n" + ONE_NODE,
        "",
        "more than 10000 YAML nodes",
    ),
    "recursive-alias": ("description: &d [*d]\n" + ONE_NODE, "", "an alias refers to its own anchor"),
    "aliases-nest-deep": (f"description: {ALIAS_CHAIN}\n" + ONE_NODE, "", "aliases nest deeper than 16"),
    "too-large-a-file": ("description: " + "x" * 200_000 + "\n" + ONE_NODE, "", "the limit is 131072"),
    "two-thousand-nodes": (
        "nodes:\n" + many(2000, "n{i}: {{kind: codex}}"),
        "nodes",
        "2000 codex nodes; the limit is 200",
    ),
    "too-many-relays": (ONE_NODE + many(17, "r{i}: {{kind: relay}}"), "nodes", "17 relays; the limit is 16"),
    "too-many-status-peers": (
        ONE_NODE + many(101, "s{i}: {{kind: status, role: member, codex: a}}"),
        "nodes",
        "101 status peers; the limit is 100",
    ),
    "too-many-networks": (
        "networks:\n  wan: {kind: wan}\n" + many(64, "l{i}: {{kind: lan, nat: symmetric}}") + ONE_NODE,
        "networks",
        "65 networks; the limit is 64",
    ),
    "more-than-a-24-holds": (
        "peering: none\nnodes:\n"
        + many(200, "n{i}: {{kind: codex}}")
        + many(16, "r{i}: {{kind: relay}}")
        + many(30, "s{i}: {{kind: status, role: member, codex: n{i}}}"),
        "networks.wan",
        "needs 247 addresses (nodes, status peers, the Waku fleet node, relays",
    ),
    "impossible-date": (
        "description: 2001-13-45\n" + ONE_NODE,
        "",
        "cannot read '2001-13-45': month must be",
    ),
    "five-thousand-digits": (f"healthcheck_interval: {'9' * 5000}\n" + ONE_NODE, "", "cannot read '99999"),
    "huge-hex-number": ("healthcheck_interval: 0x" + "f" * 40 + "\n" + ONE_NODE, "", "must fit in 64 bits"),
    "name-ends-in-newline": ('name: "smoke\\n"\n' + ONE_NODE, "name", "name 'smoke\\n' must match"),
    "node-name-ends-in-newline": ('nodes:\n  "a\\n": {kind: codex}\n', "nodes.a\\n", "must match"),
    "env-name-with-newline": (node('env: {"CODEX_X\\nEVIL": 1}'), "nodes.a.env.CODEX_X\\nEVIL", "UPPER_CASE"),
    "env-value-with-newline": (
        node('env: {CODEX_X: "1\\nCODEX_Y=2"}'),
        "nodes.a.env.CODEX_X",
        "a line break",
    ),
    "env-value-with-carriage-return": (node('env: {CODEX_X: "1\\r"}'), "nodes.a.env.CODEX_X", "a line break"),
    "env-value-with-nul": (node('env: {CODEX_X: "a\\0b"}'), "nodes.a.env.CODEX_X", "control character"),
    "log-level-with-newline": (node('log_level: "info\\nCODEX_Y=2"'), "nodes.a.log_level", "must be one of"),
    "quota-with-newline": (node('storage_quota: "2\\nMiB"'), "nodes.a.storage_quota", "is not a byte size"),
    "description-with-nul": ('description: "a\\0b"\n' + ONE_NODE, "description", "control character"),
    "description-not-a-string": (
        "description: [a, b]\n" + ONE_NODE,
        "description",
        "must be a string, got list",
    ),
    "node-named-stun": (
        LAN + "nodes:\n  stun: {kind: codex}\n" + BEHIND_HOME,
        "nodes.stun",
        "is the name of a service the testbed adds (waku, stun, router-home)",
    ),
    "node-named-waku": (
        "nodes:\n  waku: {kind: codex}\n",
        "nodes.waku",
        "is the name of a service the testbed adds (waku)",
    ),
    "node-named-like-a-router": (
        LAN + "nodes:\n  router-home: {kind: relay}\n" + BEHIND_HOME,
        "nodes.router-home",
        "adds",
    ),
    "node-named-like-a-cgn-router": (
        CGNAT + "nodes:\n  router-home-cgn: {kind: codex}\n" + BEHIND_HOME,
        "nodes.router-home-cgn",
        "(waku, stun, router-home, router-home-cgn)",
    ),
    "network-named-like-a-carrier": (
        CGNAT
        + "  home-carrier: {kind: lan, nat: symmetric}\nnodes:\n"
        + BEHIND_HOME
        + "  c: {kind: codex, network: home-carrier}\n",
        "networks.home-carrier",
        "is the name of the carrier network LAN 'home' gets",
    ),
    "two-lans-one-router-name": (
        "networks:\n  wan: {kind: wan}\n  a: {kind: lan, nat: cgnat}\n  a-cgn: {kind: lan, nat: symmetric}\n"
        "nodes:\n  x: {kind: codex, network: a}\n  y: {kind: codex, network: a-cgn}\n",
        "networks.a-cgn",
        "its router 'router-a-cgn' is LAN 'a''s too",
    ),
    "huge-healthcheck-interval": (
        "healthcheck_interval: 1000000000000\n" + ONE_NODE,
        "healthcheck_interval",
        "from 1 to 86400; got 1000000000000",
    ),
    "huge-udp-timeout": (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: symmetric, udp_timeout: 1099511627776}\n"
        "nodes:\n" + BEHIND_HOME,
        "networks.home.udp_timeout",
        "from 1 to 86400; got 1099511627776",
    ),
    "huge-quota": (
        node("storage_quota: 100000000000000000000000000TiB"),
        "nodes.a.storage_quota",
        "out of range: 1 byte to 1 PiB",
    ),
    "zero-quota": (node("storage_quota: 0"), "nodes.a.storage_quota", "out of range: 1 byte to 1 PiB"),
    "huge-block-ttl": (
        node("block_ttl: 99999999999d"),
        "nodes.a.block_ttl",
        "out of range: 1 second to 3650 days",
    ),
    "huge-link-rate": (
        node("link: {rate: 1000gbit}"),
        "nodes.a.link.rate",
        "out of range: more than 0, at most 100gbit",
    ),
    "port-above-65535": (
        node("env: {CODEX_API_PORT: 70000}"),
        "nodes.a.env.CODEX_API_PORT",
        "from 1 to 65535",
    ),
    "port-zero": (node("env: {CODEX_DISC_PORT: 0}"), "nodes.a.env.CODEX_DISC_PORT", "from 1 to 65535; got 0"),
    "port-not-a-number": (node("env: {CODEX_API_PORT: 80a}"), "nodes.a.env.CODEX_API_PORT", "a port number"),
    "port-equal-to-another": (
        node("env: {CODEX_METRICS_PORT: 8080}"),
        "nodes.a.env.CODEX_METRICS_PORT",
        "port 8080 is also --api-port",
    ),
    "port-equal-to-a-fixed-one": (
        node("env: {CODEX_API_PORT: 8070}"),
        "nodes.a.env.CODEX_API_PORT",
        "the listen port",
    ),
    "relay-port-is-its-info-port": (
        ONE_NODE + "  r: {kind: relay, env: {RELAY_LISTEN_PORT: 8082}}\n",
        "nodes.r.env.RELAY_LISTEN_PORT",
        "port 8082 is also the info port",
    ),
    "image-climbs-out": (
        node("image: ../../x"),
        "nodes.a.image",
        "'../../x' is not a docker image reference",
    ),
    "image-absolute": (node("image: /x"), "nodes.a.image", "is not a docker image reference"),
    "image-upper-case": (node("image: Codex/Nim"), "nodes.a.image", "is not a docker image reference"),
    "image-two-tags": (node("image: a:b:c"), "nodes.a.image", "is not a docker image reference"),
    "image-ends-in-newline": (node('image: "codexstorage/nim-codex\\n"'), "nodes.a.image", "is not a docker"),
    "peer-named-twice": (
        "nodes:\n  a: {kind: codex, peers: [b, b]}\n  b: {kind: codex}\n",
        "nodes.a.peers[1]",
        "names 'b' twice",
    ),
    "echoed-value-is-cut": (
        f"name: {'a' * 100_000}\n" + ONE_NODE,
        "name",
        "'… (100000 characters) must match",
    ),
    "dotted-name-is-cut": (
        "nodes:\n  ? " + "a." * 50_000 + "\n  : {kind: codex}\n",
        "nodes.a.a.a",
        "must match",
    ),
}
MESSAGE_LIMIT = 800  # characters besides the file name


# Status peers: embedded storage (the default) or a separate node (codex:), never both.
FORWARDING_LAN = "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: full-cone}\n"
CASES |= {
    "status-codex-and-storage": (
        ONE_NODE + "  s: {kind: status, role: owner, codex: a, storage: {block-retries: 3}}\n",
        "nodes.s.storage",
        "is for an embedded storage node; this peer uses 'a'",
    ),
    "status-codex-and-network": (
        ONE_NODE + "  s: {kind: status, role: owner, codex: a, network: wan}\n",
        "nodes.s.network",
        "drop codex: to embed the storage",
    ),
    "status-separate-node-behind-nat": (
        LAN + ONE_NODE + BEHIND_HOME + "  s: {kind: status, role: owner, codex: b}\n",
        "nodes.s.codex",
        "a separate storage node behind a NAT is not supported",
    ),
    "status-on-a-forwarding-lan": (
        FORWARDING_LAN + ONE_NODE + BEHIND_HOME + "  s: {kind: status, role: member, network: home}\n",
        "nodes.s.network",
        "forwards its ports to one storage node (full-cone)",
    ),
    "status-on-an-undefined-network": (
        ONE_NODE + "  s: {kind: status, role: member, network: moon}\n",
        "nodes.s.network",
        "undefined network 'moon'",
    ),
    "status-storage-port": (
        ONE_NODE + "  s: {kind: status, role: member, storage: {listen-port: 9000}}\n",
        "nodes.s.storage.'listen-port'",
        "the testbed chooses the embedded node's ports and data dir",
    ),
    "status-storage-bad-key": (
        ONE_NODE + "  s: {kind: status, role: member, storage: {BlockRetries: 3}}\n",
        "nodes.s.storage.'BlockRetries'",
        "a key is an upstream long CLI option without its dashes",
    ),
    "status-storage-float": (
        ONE_NODE + "  s: {kind: status, role: member, storage: {block-retries: 1.5}}\n",
        "nodes.s.storage.'block-retries'",
        "must be a string, a number, true/false or a list of strings",
    ),
    "status-relay-undefined": (
        ONE_NODE + "  s: {kind: status, role: member, relay: r}\n",
        "nodes.s.relay",
        "names 'r', which is not a relay node",
    ),
    "status-image-with-relay": (
        ONE_NODE + "  r: {kind: relay}\n  s: {kind: status, role: member, image: 'sb:1', relay: r}\n",
        "nodes.s.relay",
        "embeds a storage node that finds its relays itself",
    ),
    "no-storage-node": (
        "nodes:\n  r: {kind: relay}\n",
        "nodes",
        "declares no storage node (a codex node, or a status peer embedding one)",
    ),
    "status-role-missing": (
        ONE_NODE + "  s: {kind: status}\n",
        "nodes.s.role",
        "is required for a status peer",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_topology_is_named_precisely_and_creates_nothing(
    case: str, tmp_path: Path, no_engine: list[str]
) -> None:
    text, key_path, problem = CASES[case]
    file = tmp_path / f"{case}.yaml"
    file.write_text(text)

    with pytest.raises(TopologyError) as caught:
        Testbed.up(file)

    message = str(caught.value)
    assert message.startswith(f"{file}: {key_path}"), message
    assert problem in message, message
    assert len(message) - len(str(file)) < MESSAGE_LIMIT, message
    assert no_engine == [], "nothing may be created for a broken topology"


def test_missing_file_lists_the_builtin_topologies(tmp_path: Path, no_engine: list[str]) -> None:
    with pytest.raises(TopologyError, match=r"no such topology file \(built-in topologies: .*basic"):
        Testbed.up(tmp_path / "absent.yaml")
    assert no_engine == []


def test_builtin_topologies_all_load() -> None:
    for path in sorted(loader.TOPOLOGIES_DIR.glob("*.yaml")):
        topology = loader.load(path)
        assert topology.nodes or topology.status, path


def test_link_keys_shape_both_directions_and_up_down_override_them(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text(
        "seed: 9\nnodes:\n  a:\n    kind: codex\n"
        "    link: {rate: 8mbit, delay_ms: 20, up: {rate: 1mbit}, down: {loss_pct: 2, reorder_pct: 5}}\n"
    )
    topology = loader.load(file)
    link = topology.nodes["a"].link
    assert topology.seed == 9
    assert link == Link(
        up=Shaping(rate="1mbit", delay_ms=20),
        down=Shaping(rate="8mbit", delay_ms=20, loss_pct=2, reorder_pct=5),
    )
    assert link.conditioned and "linkstage" in topology.images()


def test_a_congestion_control_the_kernel_refuses_containers_is_named_before_anything_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_engine: list[str]
) -> None:
    allowed = tmp_path / "tcp_allowed_congestion_control"
    allowed.write_text("reno bbr\n")
    monkeypatch.setattr(plumbing, "ALLOWED_CONGESTION", allowed)
    file = tmp_path / "t.yaml"
    file.write_text("tcp_congestion: cubic\nnodes:\n  a: {kind: codex}\n")
    with pytest.raises(
        TopologyError, match=r"tcp_congestion: cubic is not one a container may choose.*reno, bbr"
    ):
        Testbed.up(file)
    assert no_engine == []


def test_every_endpoint_gets_the_topology_s_congestion_control(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("tcp_congestion: reno\nnodes:\n  a: {kind: codex}\n  r: {kind: relay}\n")
    plan = make_plan(loader.load(file), [ipaddress.IPv4Network("11.200.9.0/24")], IMAGES, project="p")
    assert {s.name: s.sysctls.get("net.ipv4.tcp_congestion_control") for s in services(plan)} == {
        "a": "reno",
        "r": "reno",
    }


def test_upstream_image_node_keeps_its_image() -> None:
    text = "nodes:\n  real:\n    kind: codex\n    image: codexstorage/nim-codex:0.2.5\n  ref: {kind: codex}\n"
    topology = loader.parse(text, Path("t.yaml"))
    assert topology.nodes["real"].image == "codexstorage/nim-codex:0.2.5"
    assert topology.nodes["real"].reference_image is None
    assert topology.nodes["ref"].reference_image == "codex-ref"


POOL_CASES = {
    "not-a-network": ("TESTBED_LAN_POOL", "lan", "TESTBED_LAN_POOL='lan': not an IPv4 network/prefix"),
    "prefix-too-long": ("TESTBED_WAN_POOL", "11.200.0.0/33", "not an IPv4 network/prefix"),
    "host-bits-set": ("TESTBED_WAN_POOL", "11.200.0.1/16", "has host bits set"),
    "ipv6": ("TESTBED_WAN_POOL", "fd00::/64", "not an IPv4 network/prefix"),
    "a-single-address": (
        "TESTBED_WAN_POOL",
        "11.200.0.0",
        "11.200.0.0/32: too small, a pool must hold a /24",
    ),
    "smaller-than-a-24": ("TESTBED_CARRIER_POOL", "100.64.0.0/25", "too small, a pool must hold a /24"),
    "everything": ("TESTBED_WAN_POOL", "0.0.0.0/0", "overlaps 0.0.0.0/8 (unspecified"),
    "loopback": ("TESTBED_WAN_POOL", "127.0.0.0/24", "overlaps 127.0.0.0/8 (loopback)"),
    "multicast": ("TESTBED_WAN_POOL", "224.0.0.0/24", "overlaps 224.0.0.0/4 (multicast)"),
    "link-local": ("TESTBED_LAN_POOL", "169.254.0.0/16", "overlaps 169.254.0.0/16 (link-local)"),
    "broadcast": ("TESTBED_WAN_POOL", "255.255.255.0/24", "overlaps 240.0.0.0/4 (reserved"),
    "the-hosts-own-route": ("TESTBED_WAN_POOL", "192.0.2.0/23", "overlaps the host's route to 192.0.2.0/24"),
}
HOST_ROUTES = [ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Network("172.17.0.0/16")]
ENGINE_NETWORKS = [ipaddress.IPv4Network("172.17.0.0/16")]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host with a route of its own and one to the engine's bridge."""
    for variable, _ in subnets.POOL_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(subnets, "host_routes", lambda: HOST_ROUTES)
    monkeypatch.setattr(subnets, "engine_subnets", lambda: ENGINE_NETWORKS)
    monkeypatch.setattr(subnets, "CLASH_RECHECK_S", 0)


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_a_bad_address_pool_is_named_and_creates_nothing(
    case: str, monkeypatch: pytest.MonkeyPatch, host: None, no_engine: list[str]
) -> None:
    variable, value, problem = POOL_CASES[case]
    monkeypatch.setenv(variable, value)
    with pytest.raises(PoolConfigError) as caught:
        Testbed.up("nat-profiles")  # a wan, lans and a cgnat's carrier: every pool is used
    assert str(caught.value).startswith(f"{variable}="), caught.value
    assert problem in str(caught.value)
    assert no_engine == []


def test_default_pools_and_pools_beside_the_engines_networks_are_valid(
    monkeypatch: pytest.MonkeyPatch, host: None
) -> None:
    subnets.check_host(["wan", "lan", "carrier"])
    assert [str(subnets.pool_for(kind)) for kind in ("wan", "lan", "carrier")] == [
        subnets.DEFAULT_WAN_POOL,
        subnets.DEFAULT_LAN_POOL,
        subnets.DEFAULT_CARRIER_POOL,
    ]
    monkeypatch.setenv("TESTBED_WAN_POOL", "")  # empty is unset
    monkeypatch.setenv("TESTBED_LAN_POOL", "172.16.0.0/12")  # holds the engine's bridge: allocation skips it
    subnets.check_host(["wan", "lan"])
    assert str(subnets.wan_pool()) == subnets.DEFAULT_WAN_POOL


OTHER_RUNS_LAN = ipaddress.IPv4Network("10.213.6.0/24")


@pytest.mark.parametrize(
    "engine_reads",
    [
        [[OTHER_RUNS_LAN], []],  # removed between the reads: listed before the routes were read
        [[], [], [], [OTHER_RUNS_LAN]],  # being created: its bridge's route before the engine lists it
    ],
    ids=["removed-meanwhile", "listed-a-moment-later"],
)
def test_another_runs_network_in_the_pool_is_not_the_hosts_own_route(
    engine_reads: list[list], monkeypatch: pytest.MonkeyPatch, host: None
) -> None:
    reads = iter(engine_reads)
    monkeypatch.setattr(subnets, "engine_subnets", lambda: next(reads, engine_reads[-1]))
    monkeypatch.setattr(subnets, "host_routes", lambda: [*HOST_ROUTES, OTHER_RUNS_LAN])
    subnets.check_host(["lan"])


def test_a_route_of_the_hosts_own_in_the_pool_is_refused_on_the_second_look_too(
    monkeypatch: pytest.MonkeyPatch, host: None
) -> None:
    monkeypatch.setattr(subnets, "host_routes", lambda: [*HOST_ROUTES, OTHER_RUNS_LAN])
    with pytest.raises(PoolConfigError, match=re.escape("overlaps the host's route to 10.213.6.0/24")):
        subnets.check_host(["lan"])


def test_a_plan_that_fails_after_reserving_releases_the_reservation(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[str] = []
    monkeypatch.setattr("harness.testbed.subnets.check_host", lambda kinds: None)
    monkeypatch.setattr("harness.testbed.ensure_engine", lambda: "engine ready")
    monkeypatch.setattr("harness.testbed.images.ensure_images", lambda names, log: {n: n for n in names})
    # a /29 has no address from .10 up: make_plan runs out at the first node
    monkeypatch.setattr(
        "harness.testbed.subnets.reserve", lambda p, k: [ipaddress.IPv4Network("11.200.9.0/29")]
    )
    monkeypatch.setattr("harness.testbed.subnets.release", released.append)
    with pytest.raises(PoolExhaustedError, match="network wan: no free address left in its subnet"):
        Testbed.up("basic", project="tb-released", log=lambda line: None)
    assert released == ["tb-released"]
