"""The BlockExchange experiments' pure parts: their topologies, statistics and tables."""

from __future__ import annotations

import pytest

from harness.errors import TestbedError
from harness.experiments.bx import common, duplicates, interference, latency, report
from harness.selection import BuildUnderTest


def test_an_experiment_topology_goes_through_the_topology_loader() -> None:
    model = common.topology(
        "bx-x", {"near": {"kind": "codex"}, "far": {"kind": "codex", **common.link(80, 20)}}
    )
    far = model.nodes["far"].link
    assert far is not None and far.up.delay_ms == far.down.delay_ms == 40 and far.up.jitter_ms == 10
    assert model.nodes["near"].link is None and model.seed == 1
    with pytest.raises(TestbedError, match=r"<experiment bx-bad>.*nodes\.n\.kind"):
        common.topology("bx-bad", {"n": {"kind": "nope"}})


def test_no_link_conditions_at_zero_rtt() -> None:
    assert common.link(0) == {}


def test_percentiles_of_a_sample() -> None:
    found = common.percentiles([float(v) for v in range(1, 101)])
    assert found["n"] == 100 and found["p50"] == 50.5 and 95 <= found["p95"] <= 96
    assert common.percentiles([7.0]) == {"n": 1, "p50": 7.0, "p95": 7.0}
    assert common.percentiles([])["n"] == 0


def test_md_table_lines() -> None:
    assert common.md_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def sample(p50: float, p95: float, n: int = 40) -> dict:
    return {"n": n, "p50": p50, "p95": p95}


def test_the_latency_table_has_a_row_per_build_and_rtt() -> None:
    rows = [{"rtt_ms": rtt, **{p: sample(rtt + 1.0, rtt + 2.0) for p in latency.PHASES}} for rtt in (0, 80)]
    lines = latency.table({"reference": {"rows": rows}, "me/storage:rc1": {"rows": rows}})
    assert lines[0].startswith("| build | RTT ms | want-have p50 / p95 ms | want-block p50 / p95 ms | total")
    assert lines[3] == "| reference | 80 | 81.0 / 82.0 | 81.0 / 82.0 | 81.0 / 82.0 | 40 |"
    assert len(lines) == 2 + 4


def test_the_interference_table_sets_idle_beside_busy() -> None:
    row = {
        "rtt_ms": 0,
        "idle": {k: sample(10, 20) for k in interference.KINDS},
        "busy": {k: sample(30, 90, n=12) for k in interference.KINDS},
        "bulk_mb_s": 25.0,
    }
    lines = interference.table({"reference": {"rows": [row]}})
    assert lines[2] == "| reference | 0 | stream head | 10 / 20 | 30 / 90 | 12 | 25.0 |"


def test_the_duplicates_table_gives_counts_and_ratios() -> None:
    row = {"rtt_ms": 40, "jitter_ms": 10, "downloaders": 3, "received": 400.0, "duplicate": 8.0}
    row |= {"spurious": 0.0, "duplicate_ratio": 0.02, "spurious_ratio": 0.0}
    assert duplicates.table({"reference": {"rows": [row]}})[2] == (
        "| reference | 40 | 10 | 3 | 400 | 8 (2.00%) | 0 (0.00%) |"
    )


def test_the_report_names_each_experiment_its_question_and_the_builds() -> None:
    results = {"duplicates": {"reference": {"rows": []}}}
    text = report.markdown(results, [BuildUnderTest(impl="logos-storage")])
    assert "Builds: `reference`; contract: logos-storage." in text
    assert "## duplicates\n\nDuplicates under timing: do downloaders receive the same block twice" in text
    assert set(report.EXPERIMENTS) == {"interference", "duplicates", "latency"}
