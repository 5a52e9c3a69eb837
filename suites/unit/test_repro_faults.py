"""The router faults' pure parts: the conntrack timeout policy, the spare uplink address."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace

from harness.experiments.repro import faults
from harness.experiments.repro.timeline import Timeline


def test_a_tcp_timeout_policy_covers_tcp_flows_only() -> None:
    rules = faults.mapping_timeout_rules(30, None)
    assert "ct timeout tcp-short { protocol tcp; l3proto ip; policy = { established: 30 }; }" in rules
    assert 'meta l4proto tcp ct timeout set "tcp-short"' in rules
    assert "udp" not in rules
    assert "hook prerouting priority filter" in rules, "on the flow's new entry, before it is confirmed"


def test_a_udp_policy_shortens_both_directions() -> None:
    rules = faults.mapping_timeout_rules(None, 20)
    assert "policy = { unreplied: 20, replied: 20 }" in rules and "tcp" not in rules
    both = faults.mapping_timeout_rules(30, 20)
    assert both.count("ct timeout set") == 2 and both.startswith(f"table ip {faults.TIMEOUT_TABLE} {{")


def context(routers: list[tuple[str, str]], subnets: dict[str, str]) -> faults.FaultContext:
    plan = SimpleNamespace(
        lan_routers=[SimpleNamespace(lan=lan, wan_network=uplink) for lan, uplink in routers],
        networks={name: SimpleNamespace(subnet=subnet) for name, subnet in subnets.items()},
    )
    return faults.FaultContext(SimpleNamespace(plan=plan), Timeline(), Path("/nonexistent"))


def test_each_router_gets_its_own_spare_address_far_below_the_top_of_its_uplink() -> None:
    ctx = context(
        [("home-a", "wan"), ("home-b", "wan"), ("home-c", "carrier-c")],
        {"wan": "11.200.0.0/16", "carrier-c": "100.64.3.0/24"},
    )
    found = {lan: faults.spare_uplink_address(ctx, lan) for lan in ("home-a", "home-b", "home-c")}
    assert found["home-a"] == ("11.200.255.191", 16)
    assert found["home-b"] == ("11.200.255.190", 16)
    address, prefix = found["home-c"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network("100.64.3.0/24") and prefix == 24
    top = list(ipaddress.ip_network("11.200.0.0/16").hosts())[-1]
    assert int(top) - int(ipaddress.ip_address(found["home-a"][0])) >= faults.SPARE_FROM_TOP - 1


def test_the_address_change_replaces_every_address_and_keeps_the_route_to_the_cgn() -> None:
    script = faults.address_change_script("11.200.255.190", 16)
    assert (
        script.index("ip addr del")
        < script.index("ip addr add 11.200.255.190/16")
        < script.index("conntrack -F")
    )
    assert 'ip route replace default via "$UPSTREAM_GATEWAY"' in script
    assert script.startswith(f'echo "$WAN" > {faults.WAN_IFACE_FILE}'), "later faults still find the uplink"
