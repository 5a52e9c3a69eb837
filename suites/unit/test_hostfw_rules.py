"""The host firewall guard's iptables rules: what `isolate` inserts, and whose a listed rule is
(iptables itself faked)."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest

from harness.errors import EngineError
from harness.net import hostfw
from harness.topology import loader
from harness.topology.plan import make_plan


@pytest.fixture
def iptables(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def run(*args: str, check: bool = True):
        calls.append(args)
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(hostfw, "_iptables", run)
    return calls


def test_each_bridged_network_gets_one_drop_for_traffic_leaving_by_another_bridge(iptables) -> None:
    plan = make_plan(
        loader.load("nat-pair"),
        [ipaddress.IPv4Network(s) for s in ("11.200.9.0/24", "10.213.4.0/24", "10.213.5.0/24")],
        {"codex-ref": "img", "router": "router-img", "stun": "stun-img", "relay": "relay-img"},
        project="tb-nat-1a2b3c",
    )
    bridges = [n.bridge for n in plan.networks.values() if n.bridge]
    assert bridges, "the LANs have bridges"
    hostfw.isolate(plan)
    assert iptables == [
        ("-I", "DOCKER-USER", "-i", bridge, "!", "-o", bridge, "-j", "DROP",
         "-m", "comment", "--comment", "testbed:tb-nat-1a2b3c")
        for bridge in bridges
    ]  # fmt: skip


def test_a_plan_without_bridges_inserts_nothing(iptables) -> None:
    hostfw.isolate(SimpleNamespace(project="p", networks={"wan": SimpleNamespace(bridge=None)}))
    assert iptables == []


LISTED = ["-i", "tb-a1", "!", "-o", "tb-a1", "-m", "comment", "--comment", "testbed:rel-iso", "-j", "DROP"]


def test_a_rules_comment_is_the_word_after_comment() -> None:
    assert hostfw.rule_comment(LISTED) == "testbed:rel-iso"
    assert hostfw.rule_comment(["-i", "docker0", "-j", "RETURN"]) is None
    assert hostfw.rule_comment(["-j", "DROP", "--comment"]) is None, "a dangling --comment names nothing"


@pytest.mark.parametrize(
    ("project", "owned"),
    [("rel-iso", True), (None, True), ("rel-is", False), ("rel", False), ("rel-iso-2", False)],
)
def test_a_guard_is_owned_by_its_exact_project_or_by_any_testbed(project, owned: bool) -> None:
    assert hostfw.owned_by(LISTED, project) is owned


def test_a_foreign_rule_is_owned_by_no_testbed() -> None:
    foreign = ["-s", "10.0.0.0/8", "-m", "comment", "--comment", "vpn:keep", "-j", "ACCEPT"]
    assert not hostfw.owned_by(foreign, None)
    assert not hostfw.owned_by(["-j", "RETURN"], None)


def test_iptables_runs_waiting_for_the_lock_and_raises_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[list[str]] = []

    def run(argv, capture_output, text):
        runs.append(argv)
        return SimpleNamespace(
            returncode=1, stdout="", stderr="iptables: No chain/target/match by that name.\n"
        )

    monkeypatch.setattr(hostfw.shutil, "which", lambda tool: "/usr/sbin/iptables")
    monkeypatch.setattr(hostfw.subprocess, "run", run)
    assert hostfw._iptables("-S", "DOCKER-USER", check=False).returncode == 1
    with pytest.raises(EngineError, match=r"^iptables -D DOCKER-USER -j DROP failed: iptables: No chain"):
        hostfw._iptables("-D", "DOCKER-USER", "-j", "DROP")
    assert runs == [
        ["iptables", "-w", "-S", "DOCKER-USER"],
        ["iptables", "-w", "-D", "DOCKER-USER", "-j", "DROP"],
    ]
    assert not hostfw.available(), "no DOCKER-USER chain: the guard is unavailable"


def test_without_iptables_the_guard_is_unavailable_and_lists_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostfw.shutil, "which", lambda tool: None)
    assert not hostfw.available()
    assert hostfw.rules() == []
    with pytest.raises(EngineError, match="iptables is not installed on the host"):
        hostfw._iptables("-S", "DOCKER-USER")
