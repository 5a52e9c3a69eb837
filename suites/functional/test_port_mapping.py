"""A router's port mapping (`port_mapping:` of a LAN, miniupnpd): a LAN host asks for a mapping
over UPnP IGD or NAT-PMP, as a 2026 node does before it falls back to a relay, and the WAN can
then reach it, or not, as the mode says. The clients (upnpc, natpmpc) run in a helper in the
host's network namespace, so this holds whatever image the node runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.impl import LISTEN_PORT
from harness.net.plumbing import run_in_netns, tcp_connects
from harness.testbed import Testbed
from harness.topology import loader

pytestmark = [pytest.mark.nat]

TOPOLOGY = """
name: port-mapping
description: one LAN per port-mapping mode, each behind a port-restricted NAT, and a public seed
networks:
  wan: {kind: wan}
  granted: {kind: lan, nat: port-restricted, port_mapping: grant}
  refused: {kind: lan, nat: port-restricted, port_mapping: refuse}
  broken: {kind: lan, nat: port-restricted, port_mapping: broken}
nodes:
  seed: {kind: codex}
  member-granted: {kind: codex, network: granted}
  member-refused: {kind: codex, network: refused}
  member-broken: {kind: codex, network: broken}
"""
NATPMP_PORT = LISTEN_PORT + 1  # NAT-PMP's mapping: the answer is what is checked, not the path


@pytest.fixture(scope="module")
def testbed():
    model = loader.parse(TOPOLOGY, Path("<port-mapping>"))
    with Testbed.up(model, log=lambda _: None) as testbed:
        yield testbed


def in_member(testbed: Testbed, lan: str, command: str) -> str:
    """`command` (its output, whatever its exit status) in member-<lan>'s namespace."""
    member = testbed.container(f"member-{lan}")
    return run_in_netns(member, ["sh", "-c", f"{command} 2>&1; true"], testbed.plan.project)


def reachable_through_router(testbed: Testbed, lan: str) -> bool:
    router = next(r for r in testbed.plan.lan_routers if r.lan == lan)
    return tcp_connects(testbed.container("seed"), router.wan_ip, LISTEN_PORT, testbed.plan.project)


@pytest.mark.parametrize(
    ("lan", "mapped", "reachable"),
    [("granted", True, True), ("refused", False, False), ("broken", True, False)],
)
def test_a_upnp_mapping_is_granted_refused_or_granted_and_broken(
    testbed: Testbed, lan: str, mapped: bool, reachable: bool
) -> None:
    ip = testbed.plan.nodes[f"member-{lan}"].ip
    assert not reachable_through_router(testbed, lan), "port-restricted: nothing comes in unasked"

    answer = in_member(testbed, lan, f"upnpc -e testbed -a {ip} {LISTEN_PORT} {LISTEN_PORT} TCP")

    assert ("is redirected to internal" in answer) is mapped, answer
    if not mapped:
        assert "failed with code 606" in answer, answer  # UPnP's "Action not authorized"
    assert reachable_through_router(testbed, lan) is reachable


@pytest.mark.parametrize(("lan", "mapped"), [("granted", True), ("refused", False)])
def test_nat_pmp_answers_as_the_mode_says(testbed: Testbed, lan: str, mapped: bool) -> None:
    router = next(r for r in testbed.plan.lan_routers if r.lan == lan)
    answer = in_member(testbed, lan, f"natpmpc -g {router.lan_ip} -a {NATPMP_PORT} {NATPMP_PORT} tcp 3600")
    assert (f"Mapped public port {NATPMP_PORT} protocol TCP" in answer) is mapped, answer
