"""The release gate's decisions, without running Locust."""

from __future__ import annotations

import pytest

from harness.errors import TestbedError
from harness.experiments.load import evaluate, summary
from harness.experiments.profiles import load_profile

GOOD_THRESHOLDS = ("p95_ttfb_ms", "max_error_ratio", "min_mb_s", "max_duplicate_ratio", "p95_want_block_ms")
GOOD = {
    "profile": "ci",
    "download_mb_s": 20.0,
    "requests_s": 40.0,
    "p50_ttfb_ms": 200.0,
    "p95_ttfb_ms": 700.0,
    "requests": 1000,
    "failures": 0,
    "error_ratio": 0.0,
    "duplicate_ratio": 0.0,
    "generator_ceiling": {"mb_s": 250.0, "req_s": 250.0},
    "generator": "host",
}


def test_every_profile_loads_with_all_thresholds_known() -> None:
    for name in ("ci", "release", "slowed"):
        profile = load_profile(name)
        assert {"p95_ttfb_ms", "max_error_ratio", "min_mb_s", "max_duplicate_ratio"} <= set(
            profile.thresholds
        )
        assert set(profile.thresholds) <= {*GOOD_THRESHOLDS}
        assert profile.run_time_s > 0 and profile.users > 0


def test_unknown_profile_names_the_file_and_the_choices() -> None:
    with pytest.raises(TestbedError, match=r"profiles.yaml: no load profile 'nope' \(profiles: ci, release"):
        load_profile("nope")


def test_a_run_within_every_threshold_passes() -> None:
    assert evaluate(load_profile("ci"), GOOD) == []


@pytest.mark.parametrize(
    ("change", "breach"),
    [
        ({"download_mb_s": 1.0}, "download throughput 1.00 MB/s < 3 MB/s"),
        ({"p95_ttfb_ms": 9000.0}, "p95 time to first byte 9000 ms > 5000 ms"),
        ({"error_ratio": 0.2}, "error ratio 0.2000 > 0.01"),
        ({"duplicate_ratio": 0.5}, "duplicate ratio 0.5000 > 0.05"),
        ({"bx_want_block_p95_ms": 9000.0}, "p95 BlockExchange want-block latency 9000 ms > 5000 ms"),
    ],
)
def test_each_breached_threshold_fails_the_gate(change: dict, breach: str) -> None:
    assert evaluate(load_profile("ci"), {**GOOD, **change}) == [breach]


def test_overrides_tighten_a_threshold() -> None:
    assert evaluate(load_profile("ci", {"min_mb_s": 50.0}), GOOD) == [
        "download throughput 20.00 MB/s < 50.0 MB/s"
    ]


def test_summary_shows_the_verdict_the_ceiling_and_the_baseline_diff() -> None:
    text = summary(load_profile("ci"), GOOD, [], {**GOOD, "download_mb_s": 25.0})
    assert text.startswith("# Load gate `ci`: PASS")
    assert "| download_mb_s | 25.0 | 20 | -20.0% |" in text
    assert "generator ceiling | 250.0 MB/s" in text
    failing = summary(load_profile("ci"), GOOD, ["download throughput 1.00 MB/s < 3 MB/s"], None)
    assert failing.startswith("# Load gate `ci`: FAIL") and "- breached: download throughput" in failing
