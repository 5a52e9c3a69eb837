"""The release gate end to end (CI-sized): Locust against real testbeds, via the CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from harness.engine import images

pytestmark = [pytest.mark.load, pytest.mark.timing]


def run_gate(*args: str) -> tuple[int, str, Path]:
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "load", *args], capture_output=True, text=True, timeout=600
    )
    match = re.search(r"^reports: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    return result.returncode, result.stdout, Path(match.group(1))


def test_the_ci_profile_passes_and_writes_every_report(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"download_mb_s": 1.0, "requests_s": 1.0, "p50_ttfb_ms": 1.0}))

    code, out, reports = run_gate("--profile", "ci", "--baseline", str(baseline))

    assert code == 0, out
    for name in ("results.json", "summary.md", "throughput.png", "latency.png", "run.html", "run_stats.csv"):
        assert (reports / name).stat().st_size > 0, name
    results = json.loads((reports / "results.json").read_text())
    assert results["download_mb_s"] > 3 and results["requests"] > 100 and results["error_ratio"] == 0
    assert results["generator_ceiling"]["mb_s"] > results["download_mb_s"], (
        "the generator must not be the limit"
    )
    assert "## Against the baseline" in out


def test_the_gate_catches_a_slowed_node() -> None:
    code, out, reports = run_gate("--profile", "slowed")

    assert code == 2, out
    results = json.loads((reports / "results.json").read_text())
    assert results["download_mb_s"] < 1.2, "8 Mbit/s is 1 MB/s"
    assert any(b.startswith("download throughput") for b in results["breaches"])
    assert "# Load gate `slowed`: FAIL" in out


def test_distributed_mode_runs_the_profile_on_worker_containers() -> None:
    code, out, reports = run_gate("--profile", "ci", "--workers", "2")

    assert code == 0, out
    results = json.loads((reports / "results.json").read_text())
    assert results["generator"] == "2 worker containers"
    assert results["requests"] > 100 and results["error_ratio"] == 0
    assert results["bx_requests_s"] > 0, "each worker runs its own BlockExchange agent"
    master_log = (reports / "run-master-locust.log").read_text()
    assert "2 workers connected" in master_log and "to 2 ready workers" in master_log
    for worker in (1, 2):
        assert "Got quit message from master" in (reports / f"run-worker-{worker}-locust.log").read_text()
    assert results["generator_ceiling"]["mb_s"] > results["download_mb_s"], "measured by the same workers"
    assert "generator: 2 worker containers" in out


@pytest.fixture(scope="module")
def slowed_build() -> Iterator[str]:
    """A build the A/B gate must find slower: the reference node with one wantBlock in flight
    per peer instead of 128 (set through the era's environment fallback of its own flag). Named
    beside the reference image, in the same namespace, so image cleanup takes it too."""
    reference = images.ensure_images({"codex-ref"}, log=lambda _: None)["codex-ref"]
    tag = f"{reference.rsplit(':', 1)[0]}-slowed:inflight-1"
    dockerfile = f"FROM {reference}\nENV STORAGE_MAX_INFLIGHT_PER_PEER=1\n"
    client = docker.from_env()
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels=images.LABEL, rm=True)
    yield tag
    client.images.remove(tag, force=True)


def test_the_ab_gate_flags_a_slowed_build_against_the_reference(slowed_build: str) -> None:
    code, out, reports = run_gate(
        "--profile", "ci", "--impl", "logos-storage",
        "--codex-image", slowed_build, "--baseline-image", "reference",
    )  # fmt: skip

    assert code == 2, out
    assert "A/B: FAIL (the candidate is worse: download throughput" in out
    results = json.loads((reports / "results.json").read_text())
    [throughput] = [c for c in results["comparisons"] if c["metric"] == "download_mb_s"]
    assert throughput["verdict"] == "WORSE" and throughput["high"] < 0.9, throughput
    assert [r["order"][0] for r in results["rounds"]] == ["candidate", "baseline"] * 2, "ABBA"
    for name in ("ab.png", "summary.md", "r1-candidate_stats.csv", "r4-baseline_stats.csv"):
        assert (reports / name).stat().st_size > 0, name
