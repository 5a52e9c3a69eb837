"""Repro verdicts: each expectation kind judged on recorded events, what was never observed never
counting as reproduced; rates over several runs, the table and the exit code."""

from __future__ import annotations

from typing import Any

import pytest

from harness.experiments.repro import scenario
from harness.experiments.repro.scenario import Expectation
from harness.experiments.repro.timeline import Event
from harness.experiments.repro.verdict import JUDGES, Verdict, exit_code, format_verdicts, judge, rate


def expectation(kind: str, index: int = 0, **args: Any) -> Expectation:
    """An expectation as the loader makes it: every optional argument present, defaulted."""
    defaults = {key: arg.default for key, arg in scenario.EXPECTATIONS[kind].items() if arg.optional}
    return Expectation(index, f"{kind} as the field saw it", kind, {**defaults, **args})


def verdict_of(kind: str, events: list[Event], **args: Any) -> Verdict:
    [verdict] = judge([expectation(kind, **args)], events)
    return verdict


def download(t_s: float, phase: str, ok: bool | None = None, error: str | None = None) -> Event:
    detail: dict[str, Any] = {"node": "codex-2", "dataset": "archive", "phase": phase}
    if phase == "end":
        detail |= {"ok": ok, "error": error, "bytes": 0 if not ok else 1024, "seconds": 1.0}
    return Event(t_s, "download", "fetch", detail)


def sample(t_s: float, node: str, reserved: bool | None = True, direct: tuple[str, ...] = ()) -> Event:
    detail = {"reserved": reserved, "direct_peers": list(direct)}
    return Event(t_s, "sample", node, detail)


def step(t_s: float, name: str, phase: str = "begin") -> Event:
    return Event(t_s, "step", name, {"index": 3, "action": "router_reboot", "phase": phase})


FAILED_AT_83 = [download(2.2, "begin"), download(83.2, "end", ok=False, error="stream reset")]
COMPLETED_AT_50 = [download(2.0, "begin"), download(50.0, "end", ok=True)]


@pytest.mark.parametrize(
    ("kind", "events", "args", "reproduced", "because"),
    [
        (
            "download_fails",
            FAILED_AT_83,
            {"within_s": 120},
            True,
            "download fetch ended failed at 83.2 s, 81.0 s after it began (within 120 s): 'stream reset'",
        ),
        (
            "download_fails",
            FAILED_AT_83,
            {},
            True,
            "download fetch ended failed at 83.2 s, 81.0 s after it began",
        ),
        (
            "download_fails",
            FAILED_AT_83,
            {"within_s": 60},
            False,
            "ended failed at 83.2 s, 81.0 s after it began, later than 60 s: 'stream reset'",
        ),
        (
            "download_fails",
            COMPLETED_AT_50,
            {},
            False,
            "download fetch completed at 50.0 s, 48.0 s after it began",
        ),
        (
            "download_fails",
            [download(2.0, "begin")],
            {},
            False,
            "download fetch never ended (it began at 2.0 s)",
        ),
        ("download_fails", [], {}, False, "download fetch never ended (it never began either)"),
        (
            "download_fails",
            [download(83.2, "end", ok=False)],
            {"within_s": 100},
            True,
            "ended failed at 83.2 s, 83.2 s after the start, as no begin was recorded (within 100 s)",
        ),
        (
            "download_completes",
            COMPLETED_AT_50,
            {"within_s": 60},
            True,
            "completed at 50.0 s, 48.0 s after it began",
        ),
        (
            "download_completes",
            COMPLETED_AT_50,
            {"within_s": 30},
            False,
            "48.0 s after it began, later than 30 s",
        ),
        ("download_completes", FAILED_AT_83, {}, False, "download fetch ended failed at 83.2 s"),
        ("download_completes", [download(2.0, "begin")], {}, False, "download fetch never ended"),
        (
            "download_slow",
            COMPLETED_AT_50,
            {"slower_than_s": 30},
            True,
            "48.0 s after it began, later than 30 s",
        ),
        ("download_slow", COMPLETED_AT_50, {"slower_than_s": 60}, False, "completed at 50.0 s"),
        ("download_slow", FAILED_AT_83, {"slower_than_s": 600}, True, "ended failed at 83.2 s"),
        ("download_slow", [download(2.0, "begin")], {"slower_than_s": 5}, False, "never ended"),
    ],
)
def test_a_download_outcome(
    kind: str, events: list[Event], args: dict, reproduced: bool, because: str
) -> None:
    verdict = verdict_of(kind, events, download="fetch", **args)
    assert verdict.reproduced is reproduced
    assert because in verdict.because, verdict.because


RELAYED = [sample(5.0, "codex-1"), sample(10.0, "codex-2"), sample(15.0, "codex-1")]
DIRECT_AT_14 = [sample(5.0, "codex-1"), sample(14.2, "codex-2", direct=("codex-1",)), sample(20.0, "codex-1")]
OTHERS = [sample(5.0, "codex-3", direct=("codex-1",))]  # neither node's sample


@pytest.mark.parametrize(
    ("kind", "events", "args", "reproduced", "because"),
    [
        (
            "stays_relayed",
            RELAYED,
            {},
            True,
            "codex-1 and codex-2 never went direct (3 samples, 5.0 s to 15.0 s)",
        ),
        ("stays_relayed", DIRECT_AT_14, {}, False, "codex-1 and codex-2 went direct at 14.2 s"),
        ("stays_relayed", OTHERS, {}, False, "never observed: no sample of codex-1 or codex-2 was recorded"),
        ("goes_direct", DIRECT_AT_14, {}, True, "codex-1 and codex-2 went direct at 14.2 s"),
        ("goes_direct", DIRECT_AT_14, {"within_s": 20}, True, "went direct at 14.2 s (within 20 s)"),
        ("goes_direct", DIRECT_AT_14, {"within_s": 10}, False, "went direct only at 14.2 s, later than 10 s"),
        ("goes_direct", RELAYED, {}, False, "codex-1 and codex-2 never went direct (3 samples"),
        ("goes_direct", OTHERS, {}, False, "never observed"),
    ],
)
def test_a_connection_outcome(
    kind: str, events: list[Event], args: dict, reproduced: bool, because: str
) -> None:
    verdict = verdict_of(kind, events, node="codex-1", peer="codex-2", **args)
    assert verdict.reproduced is reproduced
    assert because in verdict.because, verdict.because


LOST_AT_40 = [
    sample(5.0, "codex-1", reserved=False),  # before the reboot: does not count after it
    step(30.0, "reboot"),
    sample(35.0, "codex-1", reserved=None),  # unknown: does not count
    sample(40.0, "codex-1", reserved=False),
    step(41.0, "reboot", phase="end"),
]
KEPT = [sample(5.0, "codex-1"), sample(10.0, "codex-1", reserved=None), sample(15.0, "codex-1")]
UNKNOWN = [sample(5.0, "codex-1", reserved=None), sample(10.0, "codex-2", reserved=False)]


@pytest.mark.parametrize(
    ("kind", "events", "args", "reproduced", "because"),
    [
        (
            "reservation_lost",
            LOST_AT_40,
            {},
            True,
            "codex-1 had no reservation at 5.0 s, 5.0 s after the start",
        ),
        (
            "reservation_lost",
            LOST_AT_40,
            {"after": "reboot", "within_s": 15},
            True,
            "codex-1 had no reservation at 40.0 s, 10.0 s after step reboot began at 30.0 s (within 15 s)",
        ),
        (
            "reservation_lost",
            LOST_AT_40,
            {"after": "reboot", "within_s": 5},
            False,
            "10.0 s after step reboot began",
        ),
        ("reservation_lost", LOST_AT_40, {"within_s": 2}, False, "5.0 s after the start, later than 2 s"),
        ("reservation_lost", LOST_AT_40, {"after": "heal"}, False, "step heal never began"),
        ("reservation_lost", KEPT, {}, False, "codex-1 kept its reservation after the start (2 samples"),
        ("reservation_lost", UNKNOWN, {}, False, "never observed: no sample of codex-1 saw its reservation"),
        ("reservation_kept", KEPT, {}, True, "codex-1 kept its reservation (2 samples, 5.0 s to 15.0 s)"),
        ("reservation_kept", LOST_AT_40, {}, False, "codex-1 had no reservation at 5.0 s"),
        ("reservation_kept", UNKNOWN, {}, False, "never observed: no sample of codex-1 saw its reservation"),
        ("reservation_kept", [], {}, False, "never observed"),
    ],
)
def test_a_reservation_outcome(
    kind: str, events: list[Event], args: dict, reproduced: bool, because: str
) -> None:
    verdict = verdict_of(kind, events, node="codex-1", **args)
    assert verdict.reproduced is reproduced
    assert because in verdict.because, verdict.because


def test_every_expectation_kind_has_a_judge() -> None:
    assert set(JUDGES) == set(scenario.EXPECTATIONS)


def test_judge_keeps_the_expectations_order() -> None:
    fails = expectation("download_fails", index=0, download="fetch")
    relayed = expectation("stays_relayed", index=1, node="codex-1", peer="codex-2")

    verdicts = judge([fails, relayed], FAILED_AT_83 + RELAYED)

    assert [(v.expectation, v.reproduced) for v in verdicts] == [(fails, True), (relayed, True)]


FAILS = expectation("download_fails", index=0, download="fetch")
KEEPS = expectation("reservation_kept", index=1, node="codex-1")


def run(fails: bool, keeps: bool) -> list[Verdict]:
    return [
        Verdict(FAILS, fails, "failed at 83.2 s" if fails else "completed"),
        Verdict(KEEPS, keeps, "kept"),
    ]


def test_rate_counts_each_expectation_over_the_runs() -> None:
    runs = [run(True, True), run(False, True), run(True, True)]
    assert rate(runs) == {0: (2, 3), 1: (3, 3)}
    assert rate([]) == {}


def test_the_exit_code_is_zero_only_when_everything_reproduced_every_time() -> None:
    assert exit_code([run(True, True)]) == 0
    assert exit_code([run(True, True), run(True, True)]) == 0
    assert exit_code([run(True, True), run(True, False)]) == 1
    assert exit_code([run(False, True)]) == 1
    assert exit_code([]) == 1  # no run reproduces nothing


def test_one_run_s_table_says_reproduced_or_not_and_why() -> None:
    table = format_verdicts([run(True, False)]).splitlines()

    assert table[0].split() == ["EXPECTED", "VERDICT", "BECAUSE"]
    assert table[1].split("  ")[0] == "download_fails as the field saw it"
    assert "REPRODUCED" in table[1] and table[1].endswith("failed at 83.2 s")
    assert "not reproduced" in table[2] and table[2].endswith("kept")
    assert table[0].index("VERDICT") == table[1].index("REPRODUCED") == table[2].index("not reproduced")


def test_several_runs_show_the_rate_and_the_first_run_that_did_not_reproduce() -> None:
    table = format_verdicts([run(True, True), run(False, True), run(True, True)]).splitlines()

    assert "not reproduced 2/3" in table[1] and table[1].endswith("run 2: completed")
    assert "REPRODUCED 3/3" in table[2] and table[2].endswith("run 3: kept")
    assert format_verdicts([]) == "no runs"
