"""Every kind of malformed topology gets its precise error (file, key path, problem) and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import TopologyError
from harness.testbed import Testbed
from harness.topology import loader

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
        "either impl: reference or image: <ref>, not both",
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
    "bad-log-level": (
        "nodes:\n  codex-1:\n" + VALID_NODE + "    log_level: loud\n",
        "nodes.codex-1.log_level",
        "must be one of trace, debug",
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
    assert no_engine == [], "nothing may be created for a broken topology"


def test_missing_file_lists_the_builtin_topologies(tmp_path: Path, no_engine: list[str]) -> None:
    with pytest.raises(TopologyError, match=r"no such topology file \(built-in topologies: .*basic"):
        Testbed.up(tmp_path / "absent.yaml")
    assert no_engine == []


def test_builtin_topologies_all_load() -> None:
    for path in sorted(loader.TOPOLOGIES_DIR.glob("*.yaml")):
        topology = loader.load(path)
        assert topology.nodes, path


def test_upstream_image_node_keeps_its_image() -> None:
    text = "nodes:\n  real:\n    kind: codex\n    image: codexstorage/nim-codex:0.2.5\n  ref: {kind: codex}\n"
    topology = loader.parse(text, Path("t.yaml"))
    assert topology.nodes["real"].image == "codexstorage/nim-codex:0.2.5"
    assert topology.nodes["real"].reference_image is None
    assert topology.nodes["ref"].reference_image == "codex-ref"
