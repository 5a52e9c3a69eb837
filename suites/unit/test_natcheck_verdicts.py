"""The NAT referee's reading of `turnutils_natdiscovery` output and its verdict per router, with
the STUN probes, the TCP probe and the router's exec faked."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.net import natcheck
from harness.net.natcheck import ADF, APDF, APDM, BLOCKED, EIF, EIM, NatVerdict, _behaviour, _reflexive_ip
from harness.topology.model import NAT_PROFILES


def discovery(result: str, reflexive: str = "11.200.0.15:40312") -> str:
    """What coturn 4.6's turnutils_natdiscovery prints for one test (its result between rules)."""
    return (
        "\n-= Mapping Behavior Discovery =-\n"
        f"0: (1): INFO: IPv4. UDP reflexive addr: {reflexive}\n"
        "0: (1): INFO: IPv4. Other addr: 11.200.0.11:3479\n"
        f"\n========================================\n{result}\n========================================\n"
    )


TIMEOUT = "0: (1): INFO: STUN receive timeout..\n0: (1): INFO: STUN receive timeout..\n"


@pytest.mark.parametrize("behaviour", [EIM, APDM, EIF, ADF, APDF, "Address Dependent Mapping"])
def test_the_behaviour_is_what_the_result_line_names(behaviour: str) -> None:
    assert _behaviour(discovery(f"NAT with {behaviour}!")) == behaviour


def test_no_stun_answer_means_udp_is_blocked() -> None:
    assert _behaviour(TIMEOUT) == BLOCKED


def test_an_unknown_result_is_reported_with_its_last_lines() -> None:
    assert _behaviour("a\nb\nNo NAT! (Endpoint Independent Mapping)\n  \n") == (
        "unrecognised: a | b | No NAT! (Endpoint Independent Mapping)"
    )


def test_the_reflexive_address_is_the_ip_without_its_port() -> None:
    assert _reflexive_ip(discovery(f"NAT with {EIM}!", "11.200.0.15:40312")) == "11.200.0.15"
    assert _reflexive_ip(TIMEOUT) is None


class FakeContainer:
    def __init__(self, name: str, udp_timeout: str = "") -> None:
        self.name, self.execs, self.udp_timeout = name, [], udp_timeout

    def exec_run(self, command: list[str]) -> SimpleNamespace:
        self.execs.append(command)
        return SimpleNamespace(exit_code=0, output=f"{self.udp_timeout}\n".encode())


STUN = SimpleNamespace(name="stun", ip="11.200.0.10")
PLAN = SimpleNamespace(
    project="p",
    stun=STUN,
    nodes={
        "alice": SimpleNamespace(name="alice", network="lan-a"),
        "bob": SimpleNamespace(name="bob", network="wan"),
    },
    status={},
)


def router(declared: str, **overrides) -> SimpleNamespace:
    fields = dict(
        name="router-a", lan="lan-a", nat=declared, declared=declared, public_ip="11.200.0.15",
        upstream=None, hairpin=False, udp_timeout=None, tcp_timeout=None,
    )  # fmt: skip
    return SimpleNamespace(**{**fields, **overrides})


@pytest.fixture
def referee(monkeypatch: pytest.MonkeyPatch):
    """Fake the probes: `answers[flag]` is what natdiscovery prints, `answers["tcp"]` whether
    inbound TCP connects; `seen` records each probe."""
    state = SimpleNamespace(answers={}, seen=[])

    def run_in_netns(target, command, project, timeout_s=90):
        state.seen.append((target.name, command, timeout_s))
        return state.answers[command[1]]

    def tcp_connects(source, ip, port, project):
        state.seen.append((source.name, "tcp", ip, port))
        return state.answers["tcp"]

    monkeypatch.setattr(natcheck, "run_in_netns", run_in_netns)
    monkeypatch.setattr(natcheck, "tcp_connects", tcp_connects)
    return state


def containers(router_container: FakeContainer | None = None) -> dict:
    return {
        "alice": FakeContainer("alice"),
        "stun": FakeContainer("stun"),
        "router-a": router_container or FakeContainer("router-a"),
    }


def test_a_port_restricted_router_that_behaves_so_agrees(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {APDF}!"),
        "-m": discovery(f"NAT with {EIM}!"),
        "tcp": False,
    }
    verdict = natcheck.check_router(PLAN, router("port-restricted"), containers(), timeout_s=7)
    assert verdict == NatVerdict(
        lan="lan-a", declared="port-restricted", mapping=EIM, filtering=APDF,
        reflexive_ip="11.200.0.15", router_wan_ip="11.200.0.15",
        checks=["reflexive address = router WAN", "inbound TCP to 11.200.0.15:8070 is dropped"],
    )  # fmt: skip
    assert verdict.agrees
    # filtering first (the mapping test would pre-authorise the referee's second address)
    assert referee.seen == [
        ("alice", ["turnutils_natdiscovery", "-f", "11.200.0.10"], 7),
        ("alice", ["turnutils_natdiscovery", "-m", "11.200.0.10"], 7),
        ("stun", "tcp", "11.200.0.15", 8070),
    ]


def test_a_leaking_nat_is_a_mismatch_on_each_wrong_behaviour(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {EIF}!"),
        "-m": discovery(f"NAT with {EIM}!", "10.213.4.10:8090"),
        "tcp": True,
    }
    verdict = natcheck.check_router(PLAN, router("symmetric"), containers())
    assert not verdict.agrees
    assert verdict.problems == [
        f"mapping is {EIM}, symmetric means {APDM}",
        f"filtering is {EIF}, symmetric means {APDF}",
        "reflexive address 10.213.4.10 is not the LAN's public address 11.200.0.15",
        "inbound TCP to 11.200.0.15:8070 reaches the node",
    ]


def test_udp_blocked_skips_the_reflexive_check(referee) -> None:
    referee.answers = {"-f": TIMEOUT, "-m": TIMEOUT, "tcp": False}
    verdict = natcheck.check_router(PLAN, router("udp-blocked"), containers())
    assert (verdict.mapping, verdict.filtering, verdict.reflexive_ip) == (BLOCKED, BLOCKED, None)
    assert verdict.agrees and verdict.checks == ["inbound TCP to 11.200.0.15:8070 is dropped"]


def test_a_restricted_cone_forgets_earlier_contacts_and_does_not_probe_tcp(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {ADF}!"), "-m": discovery(f"NAT with {EIM}!"),
        "-H": "0: (1): INFO: Received a request (maybe a successful hairpinning)\n",
    }  # fmt: skip
    box = FakeContainer("router-a")
    verdict = natcheck.check_router(PLAN, router("restricted-cone", hairpin=True), containers(box))
    assert box.execs == [["nft", "flush", "set", "ip", "restricted_cone", "contacted"]]
    assert verdict.agrees
    assert verdict.checks == ["reflexive address = router WAN", "hairpinning works"]
    assert not [probe for probe in referee.seen if probe[1] == "tcp"], "inbound is ambiguous here"


def test_a_failing_hairpin_and_a_wrong_udp_timeout_are_problems(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {APDF}!"), "-m": discovery(f"NAT with {EIM}!"),
        "-H": TIMEOUT, "tcp": False,
    }  # fmt: skip
    box = FakeContainer("router-a", udp_timeout="30")
    declared = router("short-udp-timeout", hairpin=True, udp_timeout=10)
    verdict = natcheck.check_router(PLAN, declared, containers(box))
    assert verdict.problems == ["hairpin declared but hairpinning fails", "conntrack UDP timeout 30s"]
    assert box.execs == [["cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout"]]


def test_a_cgn_behind_a_cgn_says_so_and_the_right_udp_timeout_is_a_check(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {APDF}!"),
        "-m": discovery(f"NAT with {EIM}!"),
        "tcp": False,
    }
    box = FakeContainer("router-a", udp_timeout="10")
    verdict = natcheck.check_router(
        PLAN, router("cgnat", upstream="100.64.0.1", udp_timeout=10), containers(box)
    )
    assert verdict.checks == [
        "reflexive address = router WAN (CGN)",
        "inbound TCP to 11.200.0.15:8070 is dropped",
        "conntrack UDP timeout 10s",
    ]


def test_routers_are_checked_together_and_share_the_timeout_between_two_probes(referee) -> None:
    referee.answers = {
        "-f": discovery(f"NAT with {APDF}!"),
        "-m": discovery(f"NAT with {EIM}!"),
        "tcp": False,
    }
    verdicts = natcheck.check_routers(
        PLAN, [router("port-restricted"), router("port-restricted-rst")], containers(), 60
    )
    assert [v.declared for v in verdicts] == ["port-restricted", "port-restricted-rst"]
    assert {probe[2] for probe in referee.seen if probe[1] != "tcp"} == {30}
    assert natcheck.check_routers(PLAN, [], containers()) == []


def test_the_verdict_table_and_json() -> None:
    good = NatVerdict(
        "lan-a", "full-cone", EIM, EIF, "11.200.0.13", "11.200.0.13", checks=["hairpinning works"]
    )
    bad = NatVerdict("lan-b", "symmetric", EIM, APDF, "11.200.0.14", "11.200.0.14", problems=["p1", "p2"])
    assert natcheck.to_markdown([good, bad]).splitlines() == [
        "| LAN | declared | mapping | filtering | reflexive address | verdict |",
        "|---|---|---|---|---|---|",
        f"| lan-a | full-cone | {EIM} | {EIF} | 11.200.0.13 | agrees (hairpinning works) |",
        f"| lan-b | symmetric | {EIM} | {APDF} | 11.200.0.14 | MISMATCH: p1; p2 |",
    ]
    assert [(v["lan"], v["agrees"], v["problems"]) for v in json.loads(natcheck.to_json([good, bad]))] == [
        ("lan-a", True, []),
        ("lan-b", False, ["p1", "p2"]),
    ]


def test_every_lan_profile_and_no_other_has_an_expected_classification() -> None:
    assert sorted(natcheck.EXPECTED) == sorted(NAT_PROFILES)


def test_a_lan_of_status_peers_alone_is_probed_from_a_status_peer(referee) -> None:
    """A LAN may hold only status peers embedding their storage: the referee probes from one."""
    referee.answers = {
        "-f": discovery(f"NAT with {APDF}!"),
        "-m": discovery(f"NAT with {EIM}!"),
        "tcp": False,
    }
    plan = SimpleNamespace(
        project="p", stun=STUN, nodes={}, status={"erin": SimpleNamespace(name="erin", network="lan-a")}
    )
    verdict = natcheck.check_router(
        plan, router("port-restricted"), {**containers(), "erin": FakeContainer("erin")}
    )
    assert verdict.agrees, verdict.problems
    assert {seen[0] for seen in referee.seen if seen[1] != "tcp"} == {"erin"}, (
        "the STUN probes run in erin's namespace"
    )
