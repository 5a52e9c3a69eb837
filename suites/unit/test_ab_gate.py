"""The A/B gate's decisions from paired rounds, without running Locust."""

from __future__ import annotations

import math

import pytest

from harness import selection
from harness.errors import TestbedError
from harness.experiments import abgate
from harness.experiments.profiles import ABPlan, load_profile
from harness.selection import BuildUnderTest

PLAN = load_profile("ci").ab
assert PLAN is not None


def numbers(mb_s: float, ttfb_ms: float, failures: int = 0, duplicates: int = 0) -> dict:
    return {
        "download_mb_s": mb_s,
        "p50_ttfb_ms": ttfb_ms / 3,
        "p95_ttfb_ms": ttfb_ms,
        "bx_want_block_p95_ms": 50.0,
        "failures": failures,
        "requests": 1000,
        "duplicate_blocks": duplicates,
        "blocks_received": 10_000,
    }


def rounds(candidate: list[dict], baseline: list[dict]) -> list[dict]:
    return [
        {"round": i + 1, "order": list(abgate.BUILDS), "candidate": c, "baseline": b}
        for i, (c, b) in enumerate(zip(candidate, baseline, strict=True))
    ]


def verdicts(compared: list[abgate.Comparison]) -> dict[str, str]:
    return {c.metric: c.verdict for c in compared}


# the same build twice: a few per cent either way, round by round (drift hits both)
SAME = rounds(
    [numbers(20.4, 700), numbers(18.1, 760), numbers(21.0, 640), numbers(19.2, 720)],
    [numbers(20.0, 720), numbers(18.6, 730), numbers(20.2, 690), numbers(19.9, 700)],
)


def test_the_same_build_twice_shows_no_difference() -> None:
    compared = abgate.compare(SAME, PLAN)
    assert set(verdicts(compared).values()) == {abgate.NO_DIFFERENCE}
    throughput = compared[0]
    assert throughput.low < 1 < throughput.high, "the interval spans no difference"
    assert throughput.rounds == 4


def test_a_consistently_slower_candidate_is_worse_even_when_the_machine_drifts() -> None:
    drift = [1.0, 0.7, 1.2, 0.9]  # the machine's speed per round; the candidate is 30 % slower
    slowed = rounds(
        [numbers(20 * d * 0.7, 700 / d / 0.7) for d in drift], [numbers(20 * d, 700 / d) for d in drift]
    )
    found = verdicts(abgate.compare(slowed, PLAN))
    assert found["download_mb_s"] == found["p95_ttfb_ms"] == found["p50_ttfb_ms"] == abgate.WORSE
    assert found["bx_want_block_p95_ms"] == abgate.NO_DIFFERENCE


def test_a_worse_mean_within_noise_is_no_difference() -> None:
    # on average 15 % slower, but one round in four the candidate is ahead: not consistent
    noisy = rounds(
        [numbers(12, 700), numbers(22, 700), numbers(14, 700), numbers(20, 700)],
        [numbers(20, 700), numbers(18, 700), numbers(20, 700), numbers(19, 700)],
    )
    throughput = abgate.compare(noisy, PLAN)[0]
    assert throughput.ratio < 0.9 and throughput.high > 1
    assert throughput.verdict == abgate.NO_DIFFERENCE


def test_a_consistent_but_small_regression_stays_within_tolerance() -> None:
    small = rounds([numbers(19.0, 700)] * 4, [numbers(20.0, 700)] * 4)  # 5 % < 10 % tolerance
    throughput = abgate.compare(small, PLAN)[0]
    assert throughput.high < 1 and throughput.verdict == abgate.NO_DIFFERENCE


def test_faster_and_quicker_is_better_not_worse() -> None:
    faster = rounds([numbers(30, 400)] * 4, [numbers(20, 700)] * 4)
    found = verdicts(abgate.compare(faster, PLAN))
    assert found["download_mb_s"] == found["p95_ttfb_ms"] == abgate.BETTER


def test_a_candidate_that_delivers_nothing_in_a_round_is_worse() -> None:
    dead = rounds(
        [numbers(20, 700), numbers(0, 0), numbers(20, 700), numbers(20, 700)], [numbers(20, 700)] * 4
    )
    throughput = abgate.compare(dead, PLAN)[0]
    assert throughput.verdict == abgate.WORSE and throughput.ratio is None
    assert abgate.comparison_row(throughput).endswith("| WORSE |")


def test_a_metric_measured_in_neither_build_is_not_measured() -> None:
    no_bx = rounds(
        [{**numbers(20, 700), "bx_want_block_p95_ms": 0.0}] * 4,
        [{**numbers(20, 700), "bx_want_block_p95_ms": 0.0}] * 4,
    )
    assert verdicts(abgate.compare(no_bx, PLAN))["bx_want_block_p95_ms"] == abgate.NOT_MEASURED


@pytest.mark.parametrize(
    ("candidate", "verdict"),
    [({"failures": 9}, abgate.WORSE), ({"failures": 2}, abgate.NO_DIFFERENCE)],
)
def test_errors_are_pooled_and_judged_by_the_allowance(candidate: dict, verdict: str) -> None:
    # pooled: 36 of 4000 against 0 of 4000 is +0.009 > 0.002; 8 of 4000 is +0.002, allowed
    errors = rounds([{**numbers(20, 700), **candidate}] * 4, [numbers(20, 700)] * 4)
    errors_compared = {c.metric: c for c in abgate.compare(errors, PLAN)}["error_ratio"]
    assert errors_compared.verdict == verdict
    assert math.isclose(errors_compared.candidate, candidate["failures"] / 1000)


def test_duplicates_are_judged_on_the_pooled_ratio() -> None:
    dupes = rounds([numbers(20, 700, duplicates=300)] * 4, [numbers(20, 700)] * 4)
    assert verdicts(abgate.compare(dupes, PLAN))["duplicate_ratio"] == abgate.WORSE


def test_the_interval_is_reproducible_and_holds_the_mean() -> None:
    logs = [math.log(x) for x in (0.95, 1.02, 0.99, 1.04, 0.97)]
    low, high = abgate.interval(logs, 0.9)
    assert (low, high) == abgate.interval(logs, 0.9)
    assert low < math.exp(sum(logs) / len(logs)) < high
    assert abgate.interval(logs, 0.6)[0] >= low, "a lower confidence gives a narrower interval"


def test_the_summary_shows_every_round_the_ratios_and_the_verdict() -> None:
    profile = load_profile("ci")
    builds = {"candidate": BuildUnderTest(image="me/storage:rc1"), "baseline": BuildUnderTest()}
    slowed = rounds([numbers(10, 1400)] * 4, [numbers(20, 700)] * 4)
    text = abgate.summary(profile, builds, slowed, abgate.compare(slowed, PLAN))
    assert text.startswith("# Load gate `ci`, A/B: FAIL (the candidate is worse: download throughput, ")
    assert "Candidate `me/storage:rc1` against baseline the reference node (built here)" in text
    assert "| 4 | candidate | 10.00 / 20.00 | 467 / 233 | 1400 / 700 |" in text
    assert "| download throughput | 20.00 MB/s | 10.00 MB/s | 0.500 | 0.500 to 0.500 |" in text
    passing = abgate.summary(profile, builds, SAME, abgate.compare(SAME, PLAN))
    assert passing.startswith("# Load gate `ci`, A/B: PASS")


LIMITS = {
    "tolerances": {"download_mb_s": 0.1, "p50_ttfb_ms": 0.2, "p95_ttfb_ms": 0.2, "bx_want_block_p95_ms": 0.2},
    "allowances": {"error_ratio": 0.01, "duplicate_ratio": 0.01},
}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"rounds": 1, "round_time_s": 20, **LIMITS}, r"where\.rounds: at least 2"),
        ({"rounds": 4, "round_time_s": 20, "tolerance": {}, **LIMITS}, r"where: unknown keys tolerance"),
        ({"rounds": 4, **LIMITS}, r"where: missing round_time_s"),
        (
            {"rounds": 4, "round_time_s": 20, **LIMITS, "allowances": {"error_ratio": 0.01}},
            r"where\.allowances: one limit for each of error_ratio, duplicate_ratio",
        ),
        (
            {
                **LIMITS,
                "rounds": 4,
                "round_time_s": 20,
                "tolerances": {**LIMITS["tolerances"], "p50_ttfb_ms": 2},
            },
            r"where\.tolerances\.p50_ttfb_ms: a fraction",
        ),
        ("six rounds", r"where: a mapping"),
    ],
)
def test_a_broken_ab_section_names_the_key_path(raw: object, error: str) -> None:
    with pytest.raises(TestbedError, match=error):
        ABPlan.parse(raw, "where")


def test_a_profile_without_an_ab_section_refuses_an_ab_run() -> None:
    with pytest.raises(TestbedError, match=r"profile 'slowed' has no `ab:` section"):
        abgate.run_ab(load_profile("slowed"), BuildUnderTest(), BuildUnderTest())


def test_the_baseline_is_the_candidates_contract_on_another_image() -> None:
    candidate = BuildUnderTest(image="me/storage:rc1", impl="logos-storage", strict=True)
    assert selection.baseline_of(candidate, "me/storage:v1.0") == BuildUnderTest(
        image="me/storage:v1.0", impl="logos-storage", strict=True
    )
    assert selection.baseline_of(candidate, selection.REFERENCE).image is None


def test_an_ab_run_refuses_single_build_options_before_anything_starts(monkeypatch, capsys) -> None:
    from harness import cli
    from harness.experiments import abgate as gate

    def never(*args, **kwargs):
        raise AssertionError("nothing may be brought up")

    monkeypatch.setattr(gate, "run_ab", never)
    for extra in (["--threshold", "min_mb_s=5"], ["--baseline", "results.json"]):
        assert cli.main(["load", "--profile", "ci", "--baseline-image", "reference", *extra]) == 1
        assert "--baseline and --threshold are for single-build runs" in capsys.readouterr().err
