"""Address allocation (no fixed subnets, no clashes) and the deadline-bound wait helper."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness import imagerefs
from harness.engine import images
from harness.errors import PoolExhaustedError, WaitTimeout
from harness.net.plumbing import route_scripts, wan_only
from harness.render.compose import render_to_strings
from harness.topology import loader, subnets
from harness.topology.model import WAKU_SERVICE, added_services
from harness.topology.plan import address_demand, make_plan, new_project_name
from harness.topology.subnets import SubnetAllocator
from harness.waits import NotYet, wait_until

Net = ipaddress.IPv4Network


def test_allocator_skips_taken_and_overlapping_subnets() -> None:
    allocator = SubnetAllocator(Net("11.200.0.0/22"), taken=[Net("11.200.0.0/24"), Net("11.200.1.128/25")])
    assert allocator.allocate() == Net("11.200.2.0/24")
    assert allocator.allocate() == Net("11.200.3.0/24")
    with pytest.raises(PoolExhaustedError, match=r"no free /24 left in 11\.200\.0\.0/22"):
        allocator.allocate()


def test_plan_gives_each_node_an_address_and_announces_it() -> None:
    plan = make_plan(loader.load("basic"), [Net("11.200.9.0/24")], {"codex-ref": "img"}, project="p")
    ips = [node.ip for node in plan.nodes.values()]
    assert ips == ["11.200.9.10", "11.200.9.11", "11.200.9.12"]
    assert plan.networks["wan"].internal and plan.networks["wan"].gateway == "11.200.9.1"
    for node in plan.nodes.values():
        assert node.env["CODEX_NAT"] == f"extip:{node.ip}"
        assert node.api_url == f"http://{node.ip}:8080/api/codex/v1"


def builtin_plans():
    """Every shipped topology with a /24 per network, and its plan."""
    refs = {name: name for name in ("codex-ref", "status-ref", "relay", "router", "stun")}
    for path in sorted(loader.TOPOLOGIES_DIR.glob("*.yaml")):
        topology = loader.load(path)
        nets = [Net(f"10.{i}.0.0/24") for i in range(len(topology.network_kinds()))]
        yield topology, make_plan(topology, nets, refs, project="p")


def test_address_demand_is_what_make_plan_hands_out() -> None:
    """The loader refuses a topology its /24s cannot hold by address_demand: it must count what
    make_plan takes from .10 up, network by network."""
    for topology, plan in builtin_plans():
        taken = {node.ip for node in [*plan.nodes.values(), *plan.status.values(), *plan.relays.values()]}
        taken |= {router.wan_ip for router in plan.routers.values()}
        taken |= {plan.stun.ip, plan.stun.alt_ip} if plan.stun else set()
        taken |= {plan.waku.ip} if plan.waku else set()
        used = Counter(
            name
            for name, network in plan.networks.items()
            for ip in taken
            if ipaddress.IPv4Address(ip) in Net(network.subnet)
        )
        assert address_demand(topology) == Counter({name: used[name] for name in plan.networks}), (
            topology.name
        )


def test_the_reserved_names_are_the_services_the_plan_adds() -> None:
    """Every name reserved is one the plan adds; the Waku fleet node only with status peers."""
    for topology, plan in builtin_plans():
        added = set(plan.containers) - {*plan.nodes, *plan.status, *plan.relays}
        reserved = set(added_services(topology.networks.values()))
        assert added == reserved - (set() if topology.status else {WAKU_SERVICE}), topology.name


def test_a_node_moved_to_other_ports_by_its_env_is_dialled_there() -> None:
    text = "nodes:\n  a: {kind: codex, env: {CODEX_API_PORT: 9000, CODEX_METRICS_PORT: '9001'}}\n"
    plan = make_plan(loader.parse(text, Path("t.yaml")), [Net("11.200.9.0/24")], {"codex-ref": "i"})
    assert plan.nodes["a"].api_url == "http://11.200.9.10:9000/api/codex/v1"
    assert plan.nodes["a"].metrics_url == "http://11.200.9.10:9001/metrics"


def test_project_names_are_unique_and_carry_the_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    names = {new_project_name("basic") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("tb-basic-gw3-") for n in names)


def test_wait_returns_the_probe_result_once_ready() -> None:
    answers = iter([None, None, {"id": "x"}])
    assert wait_until("x", lambda: next(answers), deadline_s=5, interval_s=0.01) == {"id": "x"}


def test_wait_timeout_says_what_how_long_why_and_shows_the_culprit() -> None:
    def probe():
        raise NotYet("codex-2 not healthy yet")

    with pytest.raises(WaitTimeout) as caught:
        wait_until("containers to be healthy", probe, deadline_s=0.2, interval_s=0.05, culprit=lambda: "LOGS")
    message = str(caught.value)
    assert re.match(r"timed out after 0\.\ds \(deadline 0s\) waiting for containers to be healthy", message)
    assert "codex-2 not healthy yet" in message and message.endswith("LOGS")


def test_wait_fails_fast_on_a_hard_error() -> None:
    start = time.monotonic()

    def probe():
        raise RuntimeError("container exited")

    with pytest.raises(RuntimeError, match="container exited"):
        wait_until("anything", probe, deadline_s=30, interval_s=0.01)
    assert time.monotonic() - start < 5


def nat_pair_plan():
    return make_plan(
        loader.load("nat-pair"),
        [Net("11.200.9.0/24"), Net("10.213.4.0/24"), Net("10.213.5.0/24")],
        {"codex-ref": "img", "router": "router-img", "stun": "stun-img", "relay": "relay-img"},
        project="p",
    )


def test_nat_plan_puts_routers_between_lan_and_wan_and_routes_lan_nodes_through_them() -> None:
    plan = nat_pair_plan()
    assert plan.stun is not None and (plan.stun.ip, plan.stun.alt_ip) == ("11.200.9.10", "11.200.9.11")
    home_a = plan.routers["router-home-a"]
    assert (home_a.wan_ip, home_a.lan_ip, home_a.nat) == ("11.200.9.12", "10.213.4.2", "port-restricted")
    assert home_a.lan_host == plan.nodes["alice"].ip == "10.213.4.10"
    assert plan.nodes["alice"].gateway == "10.213.4.2"
    assert plan.nodes["seed"].gateway is None and plan.nodes["seed"].ip == "11.200.9.15"  # after the relay
    assert plan.networks["home-a"].bridge and len(plan.networks["home-a"].bridge) <= 15
    assert set(plan.containers) == {"seed", "relay", "alice", "bob", "router-home-a", "router-home-b", "stun"}


def test_natted_nodes_dial_out_and_two_nats_get_no_direct_edge() -> None:
    plan = nat_pair_plan()
    assert plan.edges == (("alice", "seed"), ("bob", "seed"))
    assert plan.nodes["alice"].peers == ("seed",) and plan.nodes["seed"].peers == ("alice", "bob")


def one_lan_plan(lan: str, nodes: str):
    """The plan of a WAN and one LAN `home` (`lan`: its flow mapping), nodes given as YAML lines."""
    text = f"networks:\n  wan: {{kind: wan}}\n  home: {lan}\nnodes:\n{nodes}"
    return make_plan(
        loader.parse(text, Path("t.yaml")),
        [Net("11.200.9.0/24"), Net("10.213.4.0/24")],
        {"codex-ref": "i", "router": "r", "stun": "s"},
    )


def test_a_port_forwarded_node_announces_its_routers_wan_address() -> None:
    plan = one_lan_plan(
        "{kind: lan, nat: port-forward}", "  seed: {kind: codex}\n  fwd: {kind: codex, network: home}\n"
    )
    router = plan.routers["router-home"]
    assert plan.nodes["fwd"].announce_ip == router.wan_ip
    assert plan.nodes["fwd"].env["CODEX_NAT"] == f"extip:{router.wan_ip}"
    assert router.forward_ports == (8070, 8090)
    assert plan.edges == (("seed", "fwd"),), "a forwarded node can be dialled"


def test_a_logos_node_behind_a_nat_announces_nothing_and_lets_autonat_find_out() -> None:
    """Upstream runs AutoNAT only without `--nat=extip:`: a Logos-era node behind a NAT is given
    its own NAT tests' AutoNAT flags instead; a Codex-era one (no AutoNAT upstream) announces its
    own address; a port-forwarded one announces its router's, in either era. A Logos-era node that
    announces an address serves AutoNAT."""
    nodes = (
        "  seed: {kind: codex, impl: logos-storage}\n"
        "  logos: {kind: codex, impl: logos-storage, network: home}\n"
        "  codex: {kind: codex, network: home}\n"
    )
    plan = one_lan_plan("{kind: lan, nat: port-restricted}", nodes)
    logos = plan.nodes["logos"]
    assert logos.announce_ip == "" and "STORAGE_NAT" not in logos.env
    assert logos.env["STORAGE_NAT_NUM_PEERS_TO_ASK"] == "1"
    assert logos.env["STORAGE_NAT_MIN_CONFIDENCE"] == "1.0"
    assert logos.env["STORAGE_NAT_SCHEDULE_INTERVAL"] == "5s"
    codex = plan.nodes["codex"]
    assert codex.env["CODEX_NAT"] == f"extip:{codex.ip}" and codex.announce_ip == codex.ip
    assert plan.nodes["seed"].env["STORAGE_NAT"] == f"extip:{plan.nodes['seed'].ip}"
    # the announced node is an AutoNAT server for the one behind the NAT, as upstream's bootstrap nodes are
    assert plan.nodes["seed"].env["STORAGE_AUTONAT_SERVER"] == "true"
    assert "STORAGE_AUTONAT_SERVER" not in logos.env
    assert not any("AUTONAT" in key for key in codex.env), "the Codex era has no AutoNAT"

    forwarded = one_lan_plan(
        "{kind: lan, nat: port-forward}",
        "  seed: {kind: codex}\n  fwd: {kind: codex, impl: logos-storage, network: home}\n",
    )
    wan_ip = forwarded.routers["router-home"].wan_ip
    assert forwarded.nodes["fwd"].env["STORAGE_NAT"] == f"extip:{wan_ip}"
    assert "STORAGE_NAT_NUM_PEERS_TO_ASK" not in forwarded.nodes["fwd"].env
    assert forwarded.nodes["fwd"].env["STORAGE_AUTONAT_SERVER"] == "true"


def test_an_embedded_storage_node_behind_a_nat_is_configured_as_a_logos_node_there() -> None:
    topology = loader.load(Path("compose/topologies/archive-nat.yaml"))
    plan = make_plan(
        topology,
        [Net(f"11.200.{i}.0/24") for i in range(len(topology.networks) + len(topology.carriers))],
        {"codex-ref": "i", "router": "r", "stun": "s", "relay": "y", "status-ref": "t"},
    )

    def storage(peer: str) -> dict:
        return json.loads(plan.status[peer].env["STATUS_STORAGE_CONFIG"])

    assert "nat" not in storage("alice") and storage("alice")["nat-min-confidence"] == "1.0"
    assert storage("carol")["nat"] == f"extip:{plan.status['carol'].ip}", "on the WAN: announced"


def test_a_cgnat_lan_gets_a_home_router_behind_a_cgn_on_a_carrier_network() -> None:
    topology = loader.parse(
        "networks:\n  wan: {kind: wan}\n  flat: {kind: lan, nat: cgnat-symmetric}\n"
        "nodes:\n  seed: {kind: codex}\n  tenant: {kind: codex, network: flat}\n",
        Path("t.yaml"),
    )
    assert topology.network_kinds() == ["wan", "lan", "carrier"]
    assert subnets.pool_for("carrier").subnet_of(Net("100.64.0.0/10"))
    plan = make_plan(
        topology,
        [Net("11.200.9.0/24"), Net("10.213.4.0/24"), Net("100.64.7.0/24")],
        {"codex-ref": "i", "router": "r", "stun": "s"},
        project="p",
    )
    home, cgn = plan.routers["router-flat"], plan.routers["router-flat-cgn"]
    carrier = plan.networks["flat-carrier"]
    assert (carrier.kind, carrier.subnet, carrier.internal) == ("carrier", "100.64.7.0/24", False)
    assert (home.nat, home.lan, home.wan_network, home.wan_ip) == (
        "port-restricted",
        "flat",
        "flat-carrier",
        "100.64.7.10",
    )
    assert (cgn.nat, cgn.lan, cgn.wan_network, cgn.lan_ip) == (
        "symmetric",
        "flat-carrier",
        "wan",
        "100.64.7.2",
    )
    assert home.upstream == cgn.lan_ip and cgn.upstream is None
    assert home.public_ip == cgn.public_ip == cgn.wan_ip and cgn.wan_ip.startswith("11.200.9.")
    assert home.declared == cgn.declared == "cgnat-symmetric"
    assert plan.nodes["tenant"].gateway == home.lan_ip
    compose = yaml.safe_load(render_to_strings(plan)["compose.yaml"])
    assert compose["services"]["router-flat"]["environment"]["UPSTREAM_GATEWAY"] == cgn.lan_ip
    assert compose["services"]["router-flat"]["cap_add"] == ["NET_ADMIN"]
    assert compose["services"]["router-flat"]["security_opt"] == ["no-new-privileges:true"]
    assert compose["services"]["router-flat"]["networks"]["flat-carrier"]["ipv4_address"] == home.wan_ip
    assert (
        compose["networks"]["flat-carrier"]["driver_opts"]["com.docker.network.bridge.enable_ip_masquerade"]
        == "false"
    )


def test_a_lan_with_pcap_has_its_router_capture_both_legs() -> None:
    plan = one_lan_plan("{kind: lan, nat: symmetric, pcap: true}", "  a: {kind: codex, network: home}\n")
    assert plan.routers["router-home"].pcap
    compose = yaml.safe_load(render_to_strings(plan)["compose.yaml"])
    assert compose["services"]["router-home"]["environment"]["PCAP_DIR"] == "/pcap"
    # tcpdump's privilege drop needs these; routers without captures keep NET_ADMIN and NET_RAW only
    assert compose["services"]["router-home"]["cap_add"] == [
        "NET_ADMIN",
        "NET_RAW",
        "CHOWN",
        "SETUID",
        "SETGID",
    ]
    assert "PCAP_DIR" not in compose["services"]["a"].get("environment", {})


def test_an_image_built_from_another_changes_tag_with_its_parent_and_copied_files() -> None:
    refs = images.image_refs({"pyruntime", "loadgen"})
    loadgen = images.SERVICE_IMAGES["loadgen"]

    assert refs["loadgen"] == loadgen.ref(refs["pyruntime"])
    assert loadgen.ref("testbed/pyruntime:other") != refs["loadgen"], "a new parent means a new tag"
    other_file = replace(loadgen, extra=(("pyproject.toml", "load/locustfile.py"), *loadgen.extra[1:]))
    assert other_file.ref(refs["pyruntime"]) != refs["loadgen"], "files copied in from the suite count"


def test_an_image_tag_ignores_what_building_leaves_in_its_folder(tmp_path: Path) -> None:
    (tmp_path / "native").mkdir()
    (tmp_path / "native" / "ext.c").write_text("int x;")
    before = imagerefs.folder_hash(tmp_path)
    for leftover in ("native/build/lib/ext.so", "native/ext.egg-info/PKG-INFO", "pkg/__pycache__/m.pyc"):
        (tmp_path / leftover).parent.mkdir(parents=True)
        (tmp_path / leftover).write_text("output")
    assert imagerefs.folder_hash(tmp_path) == before
    (tmp_path / "native" / "ext.c").write_text("int y;")
    assert imagerefs.folder_hash(tmp_path) != before, "a source change still makes a new tag"


def test_wan_services_lose_their_default_route_and_lan_nodes_route_via_their_router() -> None:
    plan = nat_pair_plan()
    scripts = route_scripts(plan)
    wan_services = [n.name for n in plan.nodes.values() if not n.gateway] + [*plan.relays, plan.stun.name]
    assert sorted(wan_only(plan)) == sorted(wan_services)
    for name in wan_services:
        assert scripts[name][0] == "ip route del default 2>/dev/null || true", name
    for node in (n for n in plan.nodes.values() if n.gateway):
        assert scripts[node.name] == [f"ip route replace default via {node.gateway}"]
    assert plan.stun.alt_ip in scripts[plan.stun.name][1]
    assert not set(scripts) & set(plan.routers), "routers set their own routes"
