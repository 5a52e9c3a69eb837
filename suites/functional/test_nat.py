"""NAT emulation, checked by an independent referee; nothing leaves the machine.

One testbed with a LAN per NAT profile. Tests run in file order; the last one breaks a router.
"""

from __future__ import annotations

import json

import docker
import pytest

from harness.imagerefs import base_image_ref
from harness.net import hostfw, natcheck, sockets
from harness.net.plumbing import tcp_connects
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.topology.model import NAT_PROFILES
from suites.functional.helpers import random_bytes, sha256

pytestmark = [pytest.mark.nat]
TOPOLOGY = "nat-profiles"
OUTSIDE = "192.0.2.1"  # TEST-NET-1: only ever looked up in routing tables here, never sent to


def test_the_referee_agrees_with_every_declared_profile(testbed: Testbed) -> None:
    verdicts = testbed.readiness.nat
    assert sorted(v["declared"] for v in verdicts) == sorted(NAT_PROFILES)
    assert all(v["agrees"] for v in verdicts), json.dumps(verdicts, indent=2)
    rerun = natcheck.check_all(testbed.plan, testbed.containers())  # independent second run
    table = natcheck.to_markdown(rerun)
    out = artifacts_dir(testbed.plan.project)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nat-check.md").write_text(table + "\n")
    print("\n" + table)
    assert all(v.agrees for v in rerun), table


def test_the_seed_sees_every_natted_node_as_its_routers_wan_address(testbed: Testbed) -> None:
    """From the seed's own sockets (the kernel's view, the same for every implementation): each
    NATed node's connection arrives from its router's WAN address, never from the node's LAN one."""
    seen = {c.remote_ip for c in sockets.established(testbed.container("seed"), testbed.plan.project)}
    for router in testbed.plan.routers.values():
        if testbed.plan.networks[router.lan].kind != "lan":
            continue  # a CGN router: its LAN is the carrier network, its home router is checked
        node = next(n for n in testbed.plan.nodes.values() if n.network == router.lan)
        assert router.public_ip in seen, f"no connection from {node.name}'s router {router.public_ip}: {seen}"
        assert node.ip not in seen, f"the seed sees {node.name} at its LAN address {node.ip}"


def test_natted_nodes_fetch_from_the_public_seed_but_cannot_be_dialled(testbed: Testbed) -> None:
    data = random_bytes(4 * 1024 * 1024)
    cid = testbed.client("seed").upload(data)
    for node in ("behind-symmetric", "behind-port-restricted", "behind-udp-blocked"):
        assert sha256(testbed.client(node, timeout_s=120).network_stream(cid)) == sha256(data), node

    # from a public host: neither the LAN address nor the router's WAN port lets a dial in
    stun = testbed.container("stun")
    behind = testbed.plan.nodes["behind-port-restricted"]
    router = testbed.plan.routers["router-lan-port-restricted"]
    assert not tcp_connects(stun, behind.ip, 8070, testbed.plan.project), "the host routed WAN -> LAN"
    assert not tcp_connects(stun, router.public_ip, 8070, testbed.plan.project), "the NAT let a dial in"
    forwarded = testbed.plan.nodes["behind-port-forward"]
    forwarding_router = testbed.plan.routers["router-lan-port-forward"]
    assert forwarded.announce_ip == forwarding_router.public_ip
    assert tcp_connects(stun, forwarding_router.public_ip, 8070, testbed.plan.project)


def test_nothing_can_leave_the_machine(testbed: Testbed) -> None:
    client = docker.from_env()
    wan = next(n for n in testbed.plan.networks.values() if n.kind == "wan")
    wan_network = next(n for n in client.networks.list(names=[f"{testbed.plan.project}_{wan.name}"]))
    assert wan_network.attrs["Internal"] is True
    guards = [" ".join(spec) for spec in hostfw.rules(testbed.plan.project)]
    for network in testbed.plan.networks.values():
        assert any(f"-i {network.bridge} ! -o {network.bridge}" in g and "-j DROP" in g for g in guards), (
            network
        )
    containers = testbed.containers()
    for name in [*testbed.plan.routers, "behind-symmetric", "seed", testbed.plan.stun.name]:
        # a routing-table lookup only: no packet is sent
        result = client.containers.run(
            base_image_ref(),
            ["sh", "-c", f"ip route get {OUTSIDE} 2>&1; ip route show default"],
            network_mode=f"container:{containers[name].id}",
            remove=True,
        ).decode()
        if name.startswith("router-"):
            upstream = testbed.plan.routers[name].upstream
            if upstream:  # a home router behind a CGN: its CGN router is checked in this loop too
                assert f"via {upstream}" in result, f"{name}: {result}"
            else:
                assert "unreachable" in result and "default" not in result, f"{name}: {result}"
        elif name in ("seed", testbed.plan.stun.name):
            # WAN services lose docker's default route: only their own subnet is reachable
            assert "unreachable" in result and "default" not in result, f"{name}: {result}"
        else:
            gateway = testbed.plan.nodes[name].gateway
            assert f"via {gateway}" in result, f"{name} must route through its router: {result}"


def test_the_referee_catches_a_router_that_does_not_nat(testbed: Testbed) -> None:
    """Negative control: with its NAT rules gone, a port-restricted router must not pass."""
    router = testbed.plan.routers["router-lan-port-restricted"]
    container = testbed.container(router.name)
    assert container.exec_run(["iptables", "-w", "-t", "nat", "-F"]).exit_code == 0
    verdict = natcheck.check_router(testbed.plan, router, testbed.containers())
    assert not verdict.agrees
    assert any("reflexive address" in problem or "filtering" in problem for problem in verdict.problems)
