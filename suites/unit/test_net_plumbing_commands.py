"""The shell that harness.net.plumbing hands its netns helpers: tc shaping, routes, probes, and
the helper container itself (on a fake engine)."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest

from harness.errors import EngineError
from harness.net import plumbing
from harness.net.plumbing import _qdiscs, _rate_bps, dev_of, route_scripts
from harness.topology import loader
from harness.topology.model import Link, Shaping
from harness.topology.plan import make_plan

Net = ipaddress.IPv4Network


def plan_of(name: str, subnets: list[str], images: dict[str, str] | None = None):
    images = images or {"codex-ref": "img", "router": "router-img", "stun": "stun-img", "relay": "relay-img"}
    return make_plan(loader.load(name), [Net(s) for s in subnets], images, project="p")


@pytest.mark.parametrize(
    ("rate", "bps"),
    [("16mbit", 16e6), ("500kbit", 5e5), ("1.5gbit", 1.5e9), ("800bit", 800.0), ("0.5mbit", 5e5)],
)
def test_tc_rates_are_read_in_bits_per_second(rate: str, bps: float) -> None:
    assert _rate_bps(rate) == bps


def test_a_rate_without_a_known_unit_is_refused() -> None:
    with pytest.raises(KeyError):
        _rate_bps("16mbps")


def test_the_interface_is_found_by_the_address_it_holds() -> None:
    assert dev_of("10.213.5.10") == r"dev=$(ip -o -4 addr | awk '/ 10.213.5.10\//{print $2}')"


def test_an_unshaped_link_only_clears_the_root_qdisc() -> None:
    assert _qdiscs("eth0", Shaping(), netem=True) == ["tc qdisc del dev eth0 root 2>/dev/null || true"]


def test_a_rate_alone_is_a_root_tbf_with_ten_milliseconds_of_burst() -> None:
    assert _qdiscs("$dev", Shaping(rate="16mbit"), netem=True) == [
        "tc qdisc del dev $dev root 2>/dev/null || true",
        "tc qdisc add dev $dev root handle 2: tbf rate 16mbit burst 20000 latency 200ms",
    ]


def test_a_slow_rate_still_gets_a_16_kib_burst() -> None:
    assert _qdiscs("ifb0", Shaping(rate="1mbit"), netem=False)[-1] == (
        "tc qdisc add dev ifb0 root handle 2: tbf rate 1mbit burst 16384 latency 200ms"
    )


def test_delay_jitter_and_loss_are_one_netem_and_the_rate_hangs_below_it() -> None:
    link = Shaping(rate="100mbit", delay_ms=40, jitter_ms=5, loss_pct=0.5)
    assert _qdiscs("ifb0", link, netem=True) == [
        "tc qdisc del dev ifb0 root 2>/dev/null || true",
        "tc qdisc add dev ifb0 root handle 1: netem delay 40ms 5ms loss 0.5%",
        "tc qdisc add dev ifb0 parent 1: handle 2: tbf rate 100mbit burst 125000 latency 200ms",
    ]


def test_loss_without_delay_is_a_zero_delay_netem() -> None:
    assert _qdiscs("eth1", Shaping(loss_pct=2), netem=True)[1:] == [
        "tc qdisc add dev eth1 root handle 1: netem delay 0ms loss 2%"
    ]


def test_delay_without_jitter_or_loss_names_only_the_delay() -> None:
    assert _qdiscs("eth1", Shaping(delay_ms=25), netem=True)[1:] == [
        "tc qdisc add dev eth1 root handle 1: netem delay 25ms"
    ]


def test_reordering_is_netems_reorder() -> None:
    assert _qdiscs("eth1", Shaping(delay_ms=10, reorder_pct=25), netem=True)[1:] == [
        "tc qdisc add dev eth1 root handle 1: netem delay 10ms reorder 25%"
    ]


def test_without_netem_the_qdiscs_carry_the_rate_alone() -> None:
    assert _qdiscs("eth1", Shaping(rate="8mbit", delay_ms=40, loss_pct=1), netem=False)[1:] == [
        "tc qdisc add dev eth1 root handle 2: tbf rate 8mbit burst 16384 latency 200ms"
    ]


def test_the_link_stage_gets_each_conditioned_direction_and_the_seed() -> None:
    link = Link(up=Shaping(rate="1mbit"), down=Shaping(delay_ms=40, jitter_ms=5, loss_pct=0.5))
    assert plumbing.link_stage_command("10.1.0.10", link, 7) == [
        "link-stage", "10.1.0.10", "down=40:5:0.5:0", "--seed", "7"
    ]  # fmt: skip
    both = Link.both(delay_ms=20, reorder_pct=10)
    assert plumbing.link_stage_command("10.1.0.10", both, 0)[2:4] == ["up=20:0:0:10", "down=20:0:0:10"]


def test_each_node_draws_its_own_numbers_and_the_same_in_every_run() -> None:
    plan = plan_of("shaped", ["11.200.9.0/24"])
    seeds = {name: plumbing.link_stage_seed(plan, name) for name in plan.nodes}
    assert len(set(seeds.values())) == len(seeds)
    assert seeds == {name: plumbing.link_stage_seed(plan, name) for name in plan.nodes}


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], bool]]:
    """Every netns helper the module would start, as (target, command, net_admin); each answers ""."""
    calls: list[tuple[str, list[str], bool]] = []

    def fake(target, command, project, net_admin=False, timeout_s=90):
        assert project == "p"
        calls.append((target.name, command, net_admin))
        return ""

    monkeypatch.setattr(plumbing, "run_in_netns", fake)
    return calls


def test_shaping_redirects_ingress_through_ifb_and_shapes_both_directions(helpers) -> None:
    link = Link(up=Shaping(rate="16mbit"), down=Shaping(rate="8mbit"))
    plumbing.shape(SimpleNamespace(name="codex-2"), "11.200.9.11", link, "p", netem=True)
    [(target, command, net_admin)] = helpers
    assert (target, command[:2], net_admin) == ("codex-2", ["sh", "-c"], True)
    assert command[2].splitlines() == [
        "set -e",
        r"dev=$(ip -o -4 addr | awk '/ 11.200.9.11\//{print $2}')",
        "ip link show ifb0 >/dev/null 2>&1 || ip link add ifb0 type ifb",
        "ip link set ifb0 up",
        "tc qdisc del dev $dev ingress 2>/dev/null || true",
        "tc qdisc add dev $dev handle ffff: ingress",
        "tc filter add dev $dev parent ffff: protocol all u32 match u32 0 0"
        " action mirred egress redirect dev ifb0",
        "tc qdisc del dev $dev root 2>/dev/null || true",
        "tc qdisc add dev $dev root handle 2: tbf rate 16mbit burst 20000 latency 200ms",
        "tc qdisc del dev ifb0 root 2>/dev/null || true",
        "tc qdisc add dev ifb0 root handle 2: tbf rate 8mbit burst 16384 latency 200ms",
    ]


def test_the_referee_gets_its_second_wan_address_once() -> None:
    plan = plan_of("nat-pair", ["11.200.9.0/24", "10.213.4.0/24", "10.213.5.0/24"])
    assert route_scripts(plan)[plan.stun.name] == [
        "ip route del default 2>/dev/null || true",
        r"dev=$(ip -o -4 addr | awk '/ 11.200.9.10\//{print $2}'); "
        "ip addr show dev $dev | grep -q ' 11.200.9.11/' || ip addr add 11.200.9.11/24 dev $dev",
    ]


def test_a_plan_without_nat_removes_every_default_route() -> None:
    plan = plan_of("basic", ["11.200.9.0/24"])
    assert route_scripts(plan) == {
        name: ["ip route del default 2>/dev/null || true"] for name in ("codex-1", "codex-2", "codex-3")
    }


def test_plumbing_routes_every_container_then_shapes_the_shaped_link(helpers) -> None:
    plan = plan_of("shaped", ["11.200.9.0/24"])
    containers = {name: SimpleNamespace(name=name) for name in plan.nodes}
    plumbing.plumb(plan, containers)
    routes = sorted(call for call in helpers if "ip route" in call[1][2])
    assert routes == [
        (name, ["sh", "-c", "set -e\nip route del default 2>/dev/null || true"], True)
        for name in ("codex-1", "codex-2", "codex-3")
    ]
    shaping = [call for call in helpers if "tbf" in call[1][2]]
    assert [target for target, _, _ in shaping] == ["codex-2"], "a rate alone needs no netem probe"
    assert len(helpers) == 4


def test_without_netem_a_conditioned_link_gets_a_link_stage(monkeypatch: pytest.MonkeyPatch, helpers) -> None:
    plan = plan_of("shaped", ["11.200.9.0/24"])
    node = plan.nodes["codex-2"]
    monkeypatch.setitem(plan.nodes, "codex-2", type(node)(**{**vars(node), "link": Link.both(delay_ms=30)}))
    monkeypatch.setattr(plumbing, "netem_available", lambda container, project: False)
    stages: list[str] = []
    monkeypatch.setattr(plumbing, "start_link_stage", lambda plan, name, target: stages.append(name))
    plumbing.plumb(plan, {name: SimpleNamespace(name=name) for name in plan.nodes})
    assert stages == ["codex-2"]
    [shaping] = [command[2] for target, command, _ in helpers if "ifb0" in command[2]]
    assert "netem" not in shaping


def test_with_netem_no_link_stage_starts(monkeypatch: pytest.MonkeyPatch, helpers) -> None:
    plan = plan_of("shaped", ["11.200.9.0/24"])
    node = plan.nodes["codex-2"]
    monkeypatch.setitem(plan.nodes, "codex-2", type(node)(**{**vars(node), "link": Link.both(delay_ms=30)}))
    monkeypatch.setattr(plumbing, "netem_available", lambda container, project: True)
    monkeypatch.setattr(plumbing, "start_link_stage", lambda *args: pytest.fail("a stage started"))
    plumbing.plumb(plan, {name: SimpleNamespace(name=name) for name in plan.nodes})
    [shaping] = [command[2] for target, command, _ in helpers if "ifb0" in command[2]]
    assert "netem delay 30ms" in shaping


@pytest.mark.parametrize(
    ("answer", "available"), [("yes\n", True), ("RTNETLINK answers: No such file\nno\n", False)]
)
def test_the_netem_probe_reads_its_last_word_and_always_removes_its_dummy(
    monkeypatch: pytest.MonkeyPatch, answer: str, available: bool
) -> None:
    commands: list[str] = []

    def fake(target, command, project, net_admin=False, timeout_s=90):
        commands.append(command[2])
        assert net_admin
        return answer if len(commands) == 1 else ""

    monkeypatch.setattr(plumbing, "run_in_netns", fake)
    assert plumbing.netem_available(SimpleNamespace(name="n"), "p") is available
    assert commands == [
        "ip link add tbprobe type dummy && tc qdisc add dev tbprobe root netem delay 1ms"
        " && echo yes || echo no",
        "ip link del tbprobe 2>/dev/null; true",
    ]


@pytest.mark.parametrize(("answer", "connects"), [("open\n", True), ("closed\n", False)])
def test_a_tcp_probe_is_a_three_second_bash_dev_tcp(
    monkeypatch: pytest.MonkeyPatch, answer, connects
) -> None:
    seen: list[list[str]] = []

    def fake(target, command, project, net_admin=False, timeout_s=90):
        seen.append(command)
        assert not net_admin, "connecting needs no capability"
        return answer

    monkeypatch.setattr(plumbing, "run_in_netns", fake)
    assert plumbing.tcp_connects(SimpleNamespace(name="stun"), "11.200.0.16", 8070, "p") is connects
    assert seen == [
        [
            "bash",
            "-c",
            "timeout 3 bash -c '</dev/tcp/11.200.0.16/8070' 2>/dev/null && echo open || echo closed",
        ]
    ]


class FakeHelper:
    def __init__(self, status: int, logs: bytes, hangs: bool = False) -> None:
        self.status, self.output, self.hangs, self.removed = status, logs, hangs, False

    def wait(self, timeout: float) -> dict:
        if self.hangs:
            raise TimeoutError("read timed out")
        return {"StatusCode": self.status}

    def logs(self) -> bytes:
        return self.output

    def remove(self, force: bool) -> None:
        self.removed = force


class FakeEngine:
    """The part of docker.DockerClient run_in_netns uses: containers.run."""

    def __init__(self, helper: FakeHelper) -> None:
        self.helper, self.runs = helper, []
        self.containers = self

    def run(self, image, command, **options):
        self.runs.append((image, command, options))
        return self.helper


TARGET = SimpleNamespace(id="c0ffee", name="codex-1")


def test_a_helper_joins_the_targets_netns_with_no_capability_but_the_one_asked_for(monkeypatch) -> None:
    monkeypatch.setattr(plumbing, "base_image_ref", lambda: "testbed-base:abc")
    engine = FakeEngine(FakeHelper(0, b"yes\n"))
    assert plumbing.run_in_netns(TARGET, ["ip", "route"], "p", net_admin=True, client=engine) == "yes\n"
    [(image, command, options)] = engine.runs
    assert (image, command) == ("testbed-base:abc", ["ip", "route"])
    assert options["network_mode"] == "container:c0ffee"
    assert options["cap_drop"] == ["ALL"] and options["cap_add"] == ["NET_ADMIN"]
    assert options["security_opt"] == ["no-new-privileges:true"] and options["detach"] is True
    assert options["labels"]["testbed.project"] == "p"
    assert engine.helper.removed


def test_a_helper_without_net_admin_adds_no_capability(monkeypatch) -> None:
    monkeypatch.setattr(plumbing, "base_image_ref", lambda: "base")
    engine = FakeEngine(FakeHelper(0, b""))
    plumbing.run_in_netns(TARGET, ["ss"], "p", client=engine)
    assert engine.runs[0][2]["cap_add"] == []


def test_a_failing_helper_raises_with_its_output_and_is_removed(monkeypatch) -> None:
    monkeypatch.setattr(plumbing, "base_image_ref", lambda: "base")
    engine = FakeEngine(FakeHelper(2, b"RTNETLINK answers: Operation not permitted\n"))
    with pytest.raises(EngineError, match=r"helper `tc qdisc` in codex-1 failed \(2\):\nRTNETLINK answers"):
        plumbing.run_in_netns(TARGET, ["tc", "qdisc"], "p", client=engine)
    assert engine.helper.removed


def test_a_hung_helper_is_reported_and_removed(monkeypatch) -> None:
    monkeypatch.setattr(plumbing, "base_image_ref", lambda: "base")
    engine = FakeEngine(FakeHelper(0, b"", hangs=True))
    with pytest.raises(EngineError, match=r"helper `sleep 99` in codex-1 did not finish: read timed out"):
        plumbing.run_in_netns(TARGET, ["sleep", "99"], "p", client=engine)
    assert engine.helper.removed
