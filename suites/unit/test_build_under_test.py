"""The build under test: profiles, selection, the plan each contract gets, and readiness that uses
only what a node's profile declares."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import impl
from harness.clients.codex import announced_addresses, circuit_addresses, dialable_addresses
from harness.errors import TestbedError, TopologyError, WaitTimeout
from harness.impl import CAP_REFERENCE_EXTRAS, CODEX, LOGOS_STORAGE, flag_of
from harness.pytest_plugin import lacking_capability
from harness.ready import readiness
from harness.render.conditions import (
    Announces,
    AnswersDebugInfo,
    CircuitReservation,
    NatAsDeclared,
    PeeredWith,
    Running,
)
from harness.render.services import services
from harness.selection import BuildUnderTest
from harness.topology import loader
from harness.topology.plan import make_plan
from harness.waits import Deadline, NotYet, wait_until

WAN = [ipaddress.IPv4Network("11.200.9.0/24")]
REFS = {"codex-ref": "testbed/codex-ref:x"}
UPSTREAM = "logosstorage/logos-storage-nim:0.4.5"


def plan_of(build: BuildUnderTest, topology: str = "basic"):
    return make_plan(build.apply(loader.load(topology)), WAN, REFS, project="p")


def test_either_eras_env_spelling_names_the_same_flag() -> None:
    assert flag_of("CODEX_API_PORT") == flag_of("STORAGE_API_PORT") == "api-port"
    assert flag_of("RELAY_LISTEN_PORT") == "RELAY_LISTEN_PORT"
    assert LOGOS_STORAGE.env("listen-port") == "STORAGE_LISTEN_PORT"
    with pytest.raises(TestbedError, match="unknown implementation 'nim'"):
        impl.profile("nim")


def test_by_default_every_node_is_the_reference_node_in_the_codex_era() -> None:
    node = plan_of(BuildUnderTest()).nodes["codex-1"]
    assert (node.impl, node.reference, node.image) == ("codex", True, REFS["codex-ref"])
    assert node.api_url.endswith(":8080/api/codex/v1")
    assert node.env["CODEX_LISTEN_ADDRS"] == "/ip4/0.0.0.0/tcp/8070" and "CODEX_STRICT" not in node.env
    assert CAP_REFERENCE_EXTRAS in node.capabilities


def test_a_logos_era_node_is_configured_as_upstream_spells_it() -> None:
    node = plan_of(BuildUnderTest(image=UPSTREAM, impl="logos-storage")).nodes["codex-1"]
    assert (node.impl, node.reference, node.image) == ("logos-storage", False, UPSTREAM)
    assert node.api_url.endswith(":8080/api/storage/v1")
    assert node.env["STORAGE_API_BINDADDR"] == "0.0.0.0", "REST is off in the Logos era unless bound"
    assert node.env["STORAGE_LISTEN_PORT"] == "8070", "the Logos node listens on a random port unless told"
    assert not any(key.startswith("CODEX_") for key in node.env)
    assert "STORAGE_NETWORK" not in node.env, "its entrypoint would fetch a bootstrap list and exit offline"
    assert set(node.capabilities) == LOGOS_STORAGE.capabilities, "an upstream image has no test extras"


def test_strict_reference_nodes_lose_their_extras() -> None:
    node = plan_of(BuildUnderTest(strict=True)).nodes["codex-1"]
    assert node.env["CODEX_STRICT"] == "true" and CAP_REFERENCE_EXTRAS not in node.capabilities
    upstream = plan_of(BuildUnderTest(image=UPSTREAM, strict=True)).nodes["codex-1"]
    assert "CODEX_STRICT" not in upstream.env, "strict is the reference node's flag, never an upstream one"


def test_a_nodes_own_image_and_impl_win_over_the_selection(tmp_path) -> None:
    topology = tmp_path / "mixed.yaml"
    topology.write_text(
        "nodes:\n"
        "  ref: {kind: codex}\n"
        "  mine: {kind: codex, impl: codex, image: codexstorage/nim-codex:0.2.5}\n"
    )
    plan = make_plan(
        BuildUnderTest(image=UPSTREAM, impl="logos-storage").apply(loader.load(topology)), WAN, REFS
    )
    assert (plan.nodes["ref"].image, plan.nodes["ref"].impl) == (UPSTREAM, "logos-storage")
    assert (plan.nodes["mine"].image, plan.nodes["mine"].impl) == ("codexstorage/nim-codex:0.2.5", "codex")


def test_a_bad_selection_is_refused_by_its_option() -> None:
    with pytest.raises(TestbedError, match="--impl 'nim'"):
        BuildUnderTest(impl="nim")
    with pytest.raises(TestbedError, match=r"--codex-image '\.\./\.\./x'"):
        BuildUnderTest(image="../../x")


def test_an_upstream_image_on_a_testbed_relay_is_refused_before_anything_is_made() -> None:
    with pytest.raises(TopologyError, match=r"nodes\.up-a\.relay: reserving on a testbed relay"):
        BuildUnderTest(image=UPSTREAM).apply(loader.load("nat-relay"))


def test_announced_addresses_are_read_where_each_era_puts_them() -> None:
    codex = {"addrs": ["/ip4/0.0.0.0/tcp/8070"], "announceAddresses": ["/ip4/11.200.9.10/tcp/8070"]}
    logos = {"addrs": ["/ip4/11.200.9.10/tcp/8070", "/ip4/11.200.9.11/tcp/4001/p2p/R/p2p-circuit"]}
    assert announced_addresses(codex) == ["/ip4/11.200.9.10/tcp/8070"]
    assert announced_addresses(logos) == logos["addrs"]
    assert dialable_addresses({"addrs": ["/ip4/1.2.3.4/udp/8090"]}) == []
    assert dialable_addresses(logos) == [logos["addrs"][0]], "a circuit is not a direct address"
    assert circuit_addresses(logos) == [logos["addrs"][1]]


NODE = SimpleNamespace(api_url="http://n/api", metrics_url="http://n:8008/metrics")


def test_codex_era_peering_is_read_from_nim_libp2ps_peer_gauge(monkeypatch) -> None:
    samples = {"libp2p_peers": 1.0}
    monkeypatch.setattr(readiness, "scrape", lambda url, timeout_s: samples)
    assert readiness.missing_peers(NODE, impl.PEERS_GAUGE, {"A", "B"}) == "libp2p_peers is 1, 2 planned"
    samples["libp2p_peers"] = 3.0
    assert readiness.missing_peers(NODE, impl.PEERS_GAUGE, {"A", "B"}) is None
    samples.clear()
    assert readiness.missing_peers(NODE, impl.PEERS_GAUGE, {"A"}) == "/metrics has no libp2p_peers"


def test_logos_era_peering_is_read_from_debug_info_connections(monkeypatch) -> None:
    info = {"connections": [{"peerId": "A", "direct": True}]}
    monkeypatch.setattr(readiness.CodexClient, "debug_info", lambda self: info)
    assert readiness.missing_peers(NODE, impl.CONNECTIONS, {"A", "B"}) == (
        "/debug/info connections lack 1 of 2 peers"
    )
    info["connections"].append({"peerId": "B", "direct": False})
    assert readiness.missing_peers(NODE, impl.CONNECTIONS, {"A", "B"}) is None


class StarOfNodes:
    """Three Logos-era nodes whose connections the test holds: a dial adds one on both ends,
    `lose` drops one again (a loaded node that lost it after the dial was answered)."""

    def __init__(self) -> None:
        self.connected: dict[str, set[str]] = {"hub": set(), "a": set(), "b": set()}
        self.dials: list[tuple[str, str]] = []
        self.nodes = {name: SimpleNamespace(api_url=name, metrics_url=name) for name in self.connected}

    def connect(self, client, peer_id: str, addrs: list[str]) -> None:
        self.dials.append((client.base, peer_id))
        self.connected[client.base].add(peer_id)
        self.connected[peer_id].add(client.base)

    def debug_info(self, client) -> dict:
        return {"connections": [{"peerId": peer} for peer in sorted(self.connected[client.base])]}

    def lose(self, one: str, other: str) -> None:
        self.connected[one].discard(other)
        self.connected[other].discard(one)


def star_progress(monkeypatch, star: StarOfNodes) -> tuple[readiness.Progress, list]:
    monkeypatch.setattr(
        readiness.CodexClient, "__init__", lambda self, url, timeout_s: setattr(self, "base", url)
    )
    # functions, not bound methods: the client is their first argument
    monkeypatch.setattr(readiness.CodexClient, "connect", lambda client, *args: star.connect(client, *args))
    monkeypatch.setattr(readiness.CodexClient, "debug_info", lambda client: star.debug_info(client))
    plan = SimpleNamespace(nodes=star.nodes, topology="star")
    progress = readiness.Progress(plan, Deadline(5), readiness.ReadinessReport("p"))
    progress.infos = {
        name: {"id": name, "addrs": [f"/ip4/10.0.0.1/tcp/8070/p2p/{name}"]} for name in star.nodes
    }
    targets = [
        ("hub", PeeredWith(peers=("a", "b"), dials=(), via=impl.CONNECTIONS)),
        ("a", PeeredWith(peers=("hub",), dials=("hub",), via=impl.CONNECTIONS)),
        ("b", PeeredWith(peers=("hub",), dials=("hub",), via=impl.CONNECTIONS)),
    ]
    return progress, targets


def test_peering_dials_again_an_edge_a_node_lost_after_its_dial_was_answered(monkeypatch) -> None:
    star = StarOfNodes()
    progress, targets = star_progress(monkeypatch, star)
    answer = star.debug_info
    polls = []

    def debug_info_losing_b_once(client) -> dict:
        polls.append(client.base)
        if len(polls) == 1:  # the first poll after the dials: b's connection to the hub is gone
            star.lose("b", "hub")
        return answer(client)

    monkeypatch.setattr(readiness.CodexClient, "debug_info", lambda client: debug_info_losing_b_once(client))
    readiness.wait_peered(progress, targets)
    assert star.dials == [("a", "hub"), ("b", "hub"), ("b", "hub")], "only the lost edge is dialled again"
    assert star.connected == {"hub": {"a", "b"}, "a": {"hub"}, "b": {"hub"}}
    (step,) = progress.report.steps
    assert step.layer == "peering" and step.detail.endswith(", 1 dialled again (1 dials)")


def test_peering_without_a_lost_edge_dials_each_edge_once(monkeypatch) -> None:
    star = StarOfNodes()
    progress, targets = star_progress(monkeypatch, star)
    readiness.wait_peered(progress, targets)
    assert star.dials == [("a", "hub"), ("b", "hub")]
    assert "again" not in progress.report.steps[0].detail


def test_what_ready_means_for_each_service_is_data_its_spec_declares() -> None:
    """A mesh: each node shows its peers through its own era's signal, the NATed node dials out
    and reserves a slot on its relay, its LAN's router is classified, the relay and the referee
    need only run."""
    text = (
        "networks:\n  wan: {kind: wan}\n  home: {kind: lan, nat: port-restricted}\n"
        "nodes:\n"
        "  seed: {kind: codex, impl: logos-storage}\n"
        "  old: {kind: codex, impl: codex}\n"
        "  relay: {kind: relay, profile: default}\n"
        "  natted: {kind: codex, network: home, relay: relay}\n"
    )
    refs = {"codex-ref": "i", "router": "r", "stun": "s", "relay": "rl"}
    plan = make_plan(loader.parse(text, Path("t.yaml")), [*WAN, ipaddress.IPv4Network("10.213.4.0/24")], refs)
    ready = {spec.name: spec.ready for spec in services(plan)}
    node = plan.nodes
    assert ready == {
        "seed": (
            Running(),
            AnswersDebugInfo(),
            Announces(node["seed"].ip),
            PeeredWith(peers=("natted", "old"), dials=("old",), via=impl.CONNECTIONS),
        ),
        "old": (
            Running(),
            AnswersDebugInfo(),
            Announces(node["old"].ip),
            PeeredWith(peers=("natted", "seed"), dials=(), via=impl.PEERS_GAUGE),
        ),
        "natted": (
            Running(),
            AnswersDebugInfo(),
            Announces(node["natted"].ip),
            PeeredWith(peers=("old", "seed"), dials=("old", "seed"), via=impl.PEERS_GAUGE),
            CircuitReservation(relay="relay"),
        ),
        "relay": (Running(),),
        "router-home": (Running(), NatAsDeclared()),
        "stun": (Running(),),
    }


def test_waits_of_one_operation_share_its_deadline() -> None:
    deadline = Deadline(0.6)

    def never() -> bool:
        raise NotYet("not yet")

    with pytest.raises(WaitTimeout):
        wait_until("the first step", never, deadline.remaining(), interval_s=0.05)
    with pytest.raises(WaitTimeout, match=r"\(deadline 0s\) waiting for the second step"):
        wait_until("the second step", never, deadline.remaining(), interval_s=0.05)


def an_item(build: BuildUnderTest, fixtures: tuple[str, ...] = ("testbed",)) -> SimpleNamespace:
    """A pytest item of a basic-topology module, marked needs(reference-extras)."""
    marker = SimpleNamespace(args=(CAP_REFERENCE_EXTRAS,))
    options = {"--codex-image": build.image, "--impl": build.impl, "--strict-reference": build.strict}
    return SimpleNamespace(
        iter_markers=lambda name: [marker] if name == "needs" else [],
        fixturenames=fixtures,
        module=SimpleNamespace(TOPOLOGY="basic"),
        config=SimpleNamespace(getoption=options.__getitem__),
    )


def test_a_test_that_needs_what_a_node_lacks_is_skipped_with_the_reason_before_bring_up() -> None:
    assert lacking_capability(an_item(BuildUnderTest(image=UPSTREAM))) == (
        f"needs {CAP_REFERENCE_EXTRAS}, which codex-1 ({UPSTREAM}) lacks"
    )
    assert "a strict reference node" in lacking_capability(an_item(BuildUnderTest(strict=True)))
    assert lacking_capability(an_item(BuildUnderTest())) is None, "the reference node has its extras"
    assert lacking_capability(an_item(BuildUnderTest(image=UPSTREAM), fixtures=())) is None


def test_the_codex_profile_declares_no_capability_beyond_the_rest_contract() -> None:
    assert CODEX.capabilities == frozenset() and CODEX.peering == impl.PEERS_GAUGE
    assert LOGOS_STORAGE.peering == impl.CONNECTIONS


def test_flags_are_spelled_as_each_nodes_era_reads_them() -> None:
    codex = plan_of(BuildUnderTest(), "blockexchange").nodes["codex-3"]
    logos = plan_of(BuildUnderTest(impl="logos-storage"), "blockexchange").nodes["codex-3"]
    assert codex.env["CODEX_BLOCK_RETRIES"] == "4" and "STORAGE_BLOCK_RETRIES" not in codex.env
    assert logos.env["STORAGE_BLOCK_RETRIES"] == "4" and "CODEX_BLOCK_RETRIES" not in logos.env


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        ("{Block_Retries: 4}", "a flag is an upstream long CLI option"),
        ("{--block-retries: 4}", "a flag is an upstream long CLI option"),
        ("{api-port: 9000}", "ports move with env"),
        ('{block-retries: "4\\nCODEX_NAT=extip:1.2.3.4"}', "line break or control character"),
    ],
)
def test_a_bad_flag_is_named_by_its_key_path(tmp_path, flags: str, problem: str) -> None:
    topology = tmp_path / "flags.yaml"
    topology.write_text(f"nodes:\n  a:\n    kind: codex\n    flags: {flags}\n")
    with pytest.raises(TopologyError, match=r"nodes\.a\.flags\.") as caught:
        loader.load(topology)
    assert problem in str(caught.value)


def test_the_nat_matrix_refuses_a_build_without_dcutr_and_connections_before_bring_up(
    monkeypatch, capsys
) -> None:
    from harness import cli

    def never(*args, **kwargs):
        raise AssertionError("nothing may be brought up")

    monkeypatch.setattr(cli.Testbed, "up", never)
    assert cli.main(["nat-matrix", "--strict-reference"]) == 2  # Codex era: no connections[]
    assert "needs debug-info-connections, nat-traversal" in capsys.readouterr().err
    assert cli.main(["nat-matrix", "--codex-image", UPSTREAM]) == 1  # a relay: on an upstream image
    assert "finds its relays itself" in capsys.readouterr().err
