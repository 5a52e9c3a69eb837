"""The order readiness evaluates condition kinds in, and what each kind's wait is handed (the
waits themselves faked: no engine, no node)."""

from __future__ import annotations

import ipaddress
import re
from concurrent.futures import Future

import pytest
import requests

from harness.clients.codex import CodexApiError
from harness.errors import EngineError, WaitTimeout
from harness.ready import readiness
from harness.ready.readiness import (
    ANSWERING,
    BACK,
    WAITS,
    ReadinessReport,
    debug_info_answer,
    wait_conditions,
)
from harness.render.conditions import (
    Announces,
    AnswersDebugInfo,
    CircuitReservation,
    FleetAnswers,
    NatAsDeclared,
    PeeredWith,
    Running,
    StatusHealth,
)
from harness.topology import loader
from harness.topology.plan import make_plan
from harness.waits import Deadline, NotYet

ORDER = (
    Running,
    AnswersDebugInfo,
    Announces,
    NatAsDeclared,
    PeeredWith,
    CircuitReservation,
    StatusHealth,
    FleetAnswers,
)


def nat_pair_plan():
    return make_plan(
        loader.load("nat-pair"),
        [ipaddress.IPv4Network(s) for s in ("11.200.9.0/24", "10.213.4.0/24", "10.213.5.0/24")],
        {"codex-ref": "img", "router": "router-img", "stun": "stun-img", "relay": "relay-img"},
        project="p",
    )


def test_kinds_are_waited_for_in_the_documented_order_each_by_its_own_wait() -> None:
    assert tuple(kind for kind, _ in WAITS) == ORDER
    assert [wait.__name__ for _, wait in WAITS] == [
        "wait_running",
        "wait_debug_info",
        "check_announced",
        "check_nats",
        "wait_peered",
        "wait_reservations",
        "wait_status_health",
        "wait_fleet",
    ]
    assert (Running, AnswersDebugInfo) == ANSWERING
    assert (Running, AnswersDebugInfo, Announces, CircuitReservation) == BACK


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[type, list]]:
    """Replace every wait with one that records (kind, targets) and checks it shares one Progress."""
    calls: list[tuple[type, list]] = []
    progresses = set()

    def fake(kind: type):
        def wait(progress, targets) -> None:
            progresses.add(id(progress))
            assert len(progresses) == 1, "every kind reads what the earlier ones found"
            calls.append((kind, targets))

        return wait

    monkeypatch.setattr(readiness, "WAITS", tuple((kind, fake(kind)) for kind, _ in WAITS))
    return calls


def test_every_kinds_wait_runs_in_order_with_the_services_conditions_of_that_kind(recorded) -> None:
    wait_conditions(nat_pair_plan(), Deadline(5), ReadinessReport("p"))
    assert [kind for kind, _ in recorded] == list(ORDER)
    targets = dict(recorded)
    assert [name for name, _ in targets[Running]] == [
        "seed", "alice", "bob", "relay", "router-home-a", "router-home-b", "stun",
    ]  # fmt: skip
    assert [name for name, _ in targets[AnswersDebugInfo]] == ["seed", "alice", "bob"]
    assert targets[Announces] == [
        ("seed", Announces(ip="11.200.9.15")),
        ("alice", Announces(ip="10.213.4.10")),
        ("bob", Announces(ip="10.213.5.10")),
    ]
    assert [name for name, _ in targets[NatAsDeclared]] == ["router-home-a", "router-home-b"]
    assert targets[PeeredWith][1] == (
        "alice",
        PeeredWith(peers=("seed",), dials=("seed",), via="libp2p_peers"),
    )
    assert targets[CircuitReservation] == [
        ("alice", CircuitReservation(relay="relay")),
        ("bob", CircuitReservation(relay="relay")),
    ]
    assert targets[StatusHealth] == [], "a kind no service asks for still runs, with no targets"


def test_only_the_kinds_asked_for_run_still_in_order(recorded) -> None:
    wait_conditions(
        nat_pair_plan(), Deadline(5), ReadinessReport("p"), kinds=(CircuitReservation, *ANSWERING)
    )
    assert [kind for kind, _ in recorded] == [Running, AnswersDebugInfo, CircuitReservation]


def test_wait_ready_fills_the_report_it_was_given(recorded) -> None:
    report = ReadinessReport("p")
    assert readiness.wait_ready(nat_pair_plan(), deadline_s=5, report=report) is report
    assert len(recorded) == len(ORDER)


def test_plumbing_is_waited_for_once_the_nodes_answer_and_before_any_kind_that_needs_routes(
    recorded,
) -> None:
    kinds_done_when_waited: list[list[type]] = []

    class Plumbing(Future):
        def result(self, timeout: float | None = None) -> None:
            kinds_done_when_waited.append([kind for kind, _ in recorded])
            return super().result(timeout)

    plumbing = Plumbing()
    plumbing.set_result(None)
    report = ReadinessReport("p")

    wait_conditions(nat_pair_plan(), Deadline(5), report, plumbing=plumbing)

    assert kinds_done_when_waited == [list(ANSWERING)], "waited for once, after the nodes answer"
    assert [step.layer for step in report.steps] == ["plumbing"]
    assert [kind for kind, _ in recorded] == list(ORDER)


def test_failed_plumbing_stops_readiness_before_the_kinds_that_need_routes(recorded) -> None:
    plumbing: Future = Future()
    plumbing.set_exception(EngineError("helper `ip route del default` in alice failed (2)"))

    with pytest.raises(EngineError, match="ip route del default"):
        wait_conditions(nat_pair_plan(), Deadline(5), ReadinessReport("p"), plumbing=plumbing)

    assert [kind for kind, _ in recorded] == list(ANSWERING)


def test_plumbing_that_outlasts_the_deadline_is_named(recorded) -> None:
    with pytest.raises(WaitTimeout, match=r"waiting for plumbing \(routes, shaping\) to finish"):
        wait_conditions(nat_pair_plan(), Deadline(0.2), ReadinessReport("p"), plumbing=Future())

    assert [kind for kind, _ in recorded] == list(ANSWERING)


class FakeNode:
    def __init__(self, answer) -> None:
        self.answer = answer

    def debug_info(self) -> dict:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_debug_info_counts_once_it_names_an_id_and_a_signed_record() -> None:
    info = {"id": "16Uiu2HAm", "spr": "spr:CiUIAhIh", "addrs": []}
    assert debug_info_answer(FakeNode(info)) is info


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"id": "16Uiu2HAm"}, "debug/info without id/spr: {'id': '16Uiu2HAm'}"),
        ({"id": "", "spr": "spr:x"}, "debug/info without id/spr"),
        ({"id": "16Uiu2HAm", "spr": "CiUIAhIh"}, "debug/info without id/spr"),
        (requests.ConnectionError("refused"), "ConnectionError: refused"),
        (CodexApiError("GET", "http://n/api/debug/info", 503, "starting"), "CodexApiError: GET http://n/api"),
        (ValueError("Expecting value"), "ValueError: Expecting value"),
    ],
)
def test_debug_info_is_not_yet_until_then(answer, why: str) -> None:
    with pytest.raises(NotYet, match="^" + re.escape(why)):
        debug_info_answer(FakeNode(answer))
