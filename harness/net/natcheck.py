"""The NAT referee: classify each router from behind it and compare with its declared profile.

From a LAN node's network namespace, `turnutils_natdiscovery` (RFC 5780) asks the coturn referee
(two WAN addresses) for the filtering behaviour first, then the mapping: the mapping test contacts
the referee's second address, which would pre-authorise an address-keyed filter and make a
restricted cone look like a full cone (docs/nat.md, "The referee"). Also checked: the reflexive
address is the router's WAN address (a LAN address there means traffic bypassed the NAT),
hairpinning where declared, inbound TCP to the node's listen port (open only where the profile
forwards), and the conntrack UDP timeout where one is set.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from docker.models.containers import Container

from harness.net.plumbing import run_in_netns, tcp_connects
from harness.topology.plan import LISTEN_PORT, Plan, RouterPlan

BLOCKED = "no answer (UDP blocked)"
EIM, APDM = "Endpoint Independent Mapping", "Address and Port Dependent Mapping"
EIF, ADF, APDF = (
    "Endpoint Independent Filtering",
    "Address Dependent Filtering",
    "Address and Port Dependent Filtering",
)
# declared profile -> (mapping, filtering, inbound TCP to the listen port reaches the node?)
EXPECTED: dict[str, tuple[str, str, bool | None]] = {
    "port-forward": (EIM, APDF, True),  # ephemeral ports are filtered; the listen port is forwarded
    "full-cone": (EIM, EIF, True),
    "restricted-cone": (EIM, ADF, None),  # the referee itself was contacted: inbound is ambiguous
    "port-restricted": (EIM, APDF, False),
    "port-restricted-rst": (EIM, APDF, False),
    "symmetric": (APDM, APDF, False),
    "udp-blocked": (BLOCKED, BLOCKED, False),
    "short-udp-timeout": (EIM, APDF, False),
    # through both NATs of the chain: the outer (CGN) one decides
    "cgnat": (EIM, APDF, False),
    "cgnat-symmetric": (APDM, APDF, False),
}


@dataclass
class NatVerdict:
    lan: str
    declared: str
    mapping: str
    filtering: str
    reflexive_ip: str | None
    router_wan_ip: str
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.problems


def _behaviour(output: str) -> str:
    if match := re.search(r"NAT with (.+?)!", output):
        return match.group(1)
    if "STUN receive timeout" in output:
        return BLOCKED
    return "unrecognised: " + " | ".join(output.strip().splitlines()[-3:])


def _reflexive_ip(output: str) -> str | None:
    match = re.search(r"UDP reflexive addr: ([\d.]+):\d+", output)
    return match.group(1) if match else None


def check_router(
    plan: Plan, router: RouterPlan, containers: dict[str, Container], timeout_s: float = 90
) -> NatVerdict:
    """Classify one router; each STUN probe may take `timeout_s` at most."""
    assert plan.stun is not None
    # from a node's (or status peer's) network namespace behind the router
    behind = next(p.name for p in [*plan.nodes.values(), *plan.status.values()] if p.network == router.lan)
    inside = containers[behind]

    def discover(flag: str) -> str:
        return run_in_netns(
            inside, ["turnutils_natdiscovery", flag, plan.stun.ip], plan.project, timeout_s=timeout_s
        )

    if router.nat == "restricted-cone":
        # forget the addresses learned by an earlier run, or its mapping test (which contacts the
        # referee's second address) would make the filter look endpoint-independent now
        containers[router.name].exec_run(["nft", "flush", "set", "ip", "restricted_cone", "contacted"])
    filtering_out = discover("-f")
    mapping_out = discover("-m")
    mapping, filtering, inbound = EXPECTED[router.declared]
    verdict = NatVerdict(
        lan=router.lan,
        declared=router.declared,
        mapping=_behaviour(mapping_out),
        filtering=_behaviour(filtering_out),
        reflexive_ip=_reflexive_ip(mapping_out),
        router_wan_ip=router.public_ip,
    )
    if verdict.mapping != mapping:
        verdict.problems.append(f"mapping is {verdict.mapping}, {router.declared} means {mapping}")
    if verdict.filtering != filtering:
        verdict.problems.append(f"filtering is {verdict.filtering}, {router.declared} means {filtering}")
    if mapping != BLOCKED:
        if verdict.reflexive_ip != router.public_ip:
            verdict.problems.append(
                f"reflexive address {verdict.reflexive_ip} is not the LAN's public address {router.public_ip}"
            )
        else:
            verdict.checks.append("reflexive address = router WAN" + (" (CGN)" if router.upstream else ""))
    if router.hairpin:
        hairpins = "successful hairpinning" in discover("-H")
        (verdict.checks if hairpins else verdict.problems).append(
            "hairpinning works" if hairpins else "hairpin declared but hairpinning fails"
        )
    if inbound is not None:
        is_open = tcp_connects(containers[plan.stun.name], router.public_ip, LISTEN_PORT, plan.project)
        outcome = "reaches the node" if is_open else "is dropped"
        wording = f"inbound TCP to {router.public_ip}:{LISTEN_PORT} {outcome}"
        (verdict.checks if is_open == inbound else verdict.problems).append(wording)
    for proto, declared, sysctl in (
        ("UDP", router.udp_timeout, "nf_conntrack_udp_timeout"),
        ("TCP", router.tcp_timeout, "nf_conntrack_tcp_timeout_established"),
    ):
        if declared:
            actual = containers[router.name].exec_run(["cat", f"/proc/sys/net/netfilter/{sysctl}"])
            value = actual.output.decode().strip()
            (verdict.checks if value == str(declared) else verdict.problems).append(
                f"conntrack {proto} timeout {value}s"
            )
    return verdict


def check_all(plan: Plan, containers: dict[str, Container], timeout_s: float = 180) -> list[NatVerdict]:
    """Every LAN, from behind its router: a CGNAT LAN is classified through both of its NATs."""
    return check_routers(plan, plan.lan_routers, containers, timeout_s)


def check_routers(
    plan: Plan, routers: list[RouterPlan], containers: dict[str, Container], timeout_s: float = 180
) -> list[NatVerdict]:
    """These LANs' routers at once (each check takes seconds of STUN timeouts); each router's two
    probes share `timeout_s`."""
    if not routers:
        return []
    with ThreadPoolExecutor(max_workers=len(routers)) as pool:
        return list(pool.map(lambda r: check_router(plan, r, containers, timeout_s / 2), routers))


def to_markdown(verdicts: list[NatVerdict]) -> str:
    lines = [
        "| LAN | declared | mapping | filtering | reflexive address | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        verdict = "agrees" if v.agrees else "MISMATCH: " + "; ".join(v.problems)
        extra = f" ({'; '.join(v.checks)})" if v.checks else ""
        lines.append(
            f"| {v.lan} | {v.declared} | {v.mapping} | {v.filtering} | {v.reflexive_ip} | {verdict}{extra} |"
        )
    return "\n".join(lines)


def to_json(verdicts: list[NatVerdict]) -> str:
    return json.dumps([{**asdict(v), "agrees": v.agrees} for v in verdicts], indent=2)
