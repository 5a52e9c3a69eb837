"""`testbed experiment blockexchange`, end to end on the build under test: the latency experiment
(the probe, link conditions, the report) runs and its numbers follow the links' round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.experiments.bx import latency, report
from harness.pytest_plugin import build_under_test

pytestmark = [pytest.mark.blockexchange]


def test_single_request_latency_grows_with_the_round_trip(request, tmp_path: Path) -> None:
    build = build_under_test(request.config)
    folder = report.run(["latency"], [build], samples=8, out=tmp_path)

    rows = json.loads((folder / "results.json").read_text())["latency"][report.label(build)]["rows"]
    assert [row["rtt_ms"] for row in rows] == list(latency.RTTS_MS)
    for row in rows:
        have, block = row["want_have"], row["want_block"]
        assert have["n"] == block["n"] == 8
        assert have["p50"] >= row["rtt_ms"], "a presence answer needs at least one round trip"
        assert block["p50"] >= row["rtt_ms"], "so does a block"
    slowest, fastest = rows[-1], rows[0]
    assert slowest["total"]["p50"] > fastest["total"]["p50"] + 2 * 200, "two exchanges 200 ms away"
    assert f"| {report.label(build)} | 200 |" in (folder / "report.md").read_text()
    assert (folder / "blockexchange.png").stat().st_size > 0
