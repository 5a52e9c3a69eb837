"""The release gate: Locust against a ready testbed, thresholds, reports, plots, baseline diff.

`testbed load --profile <name>` brings the profile's topology up, runs Locust headless for a
bounded time (Locust's own --run-time; the subprocess also has a hard deadline), then reads
Locust's CSVs and the nodes' Prometheus counters, applies the profile's thresholds and writes
results.json, summary.md, throughput.png, latency.png and Locust's CSV/HTML under
artifacts/load/<profile>-<time>/. Exit code 2 means a threshold was breached.
Before the run, the same Locust setup fetches a file from a trivial static server: the
generator's own ceiling, so a slow generator is never mistaken for a slow node.
With `workers: N` (or --workers N) Locust runs as a master and N worker containers on the
testbed's WAN (harness/experiments/locust_run.py), and the static server is a container there too.
"""

from __future__ import annotations

import csv
import http.server
import importlib.util
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from harness.engine import images
from harness.experiments.bx.common import counters
from harness.experiments.bx.probe import bx_peer
from harness.experiments.locust_run import Fleet, LocustRun, run_on_host
from harness.experiments.profiles import Profile
from harness.paths import artifacts_dir
from harness.selection import BuildUnderTest
from harness.testbed import Testbed

CEILING_SECONDS = 8
CEILING_FILE_BYTES = 1024 * 1024
Execute = Callable[[LocustRun, dict, Path], None]  # runs Locust on the host or on a Fleet
# What the `load` extra (`pip install 'codex-testbed[load]'`) adds to the core's dependencies.
EXTRA_MODULES = ("locust", "matplotlib")


def missing_extra() -> list[str]:
    """The modules of the `load` extra this interpreter lacks (found, not imported: importing
    Locust monkey-patches the process with gevent)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def _stats(run_dir: Path, prefix: str) -> dict[str, dict[str, str]]:
    with (run_dir / f"{prefix}_stats.csv").open() as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def _bytes(row: dict[str, str]) -> float:
    return float(row["Average Content Size"]) * int(row["Request Count"])


@contextmanager
def loopback_static_server(run_dir: Path) -> Iterator[str]:
    """A trivial static server on loopback (the host generator's ceiling); yields the file's URL."""
    static = run_dir / "static"
    static.mkdir()
    (static / "blob").write_bytes(os.urandom(CEILING_FILE_BYTES))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(static), **kwargs)

        def log_message(self, format: str, *args) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/blob"
    finally:
        server.shutdown()
        shutil.rmtree(static)


def measure_ceiling(run_dir: Path, users: int, execute: Execute, server: AbstractContextManager[str]) -> dict:
    """The same Locust setup as the run, fetching a static file: what the generator itself can do."""
    with server as url:
        config = {"nodes": {}, "sizes": [], "ceiling_url": url}
        execute(LocustRun("ceiling", ["CeilingUser"], users, users, CEILING_SECONDS), config, run_dir)
    row = _stats(run_dir, "ceiling")["ceiling"]
    return {"req_s": float(row["Requests/s"]), "mb_s": _bytes(row) / CEILING_SECONDS / 1e6}


def _block_counters(testbed: Testbed) -> dict[str, float]:
    """Blocks received, and those of them duplicate or spurious, summed over the nodes."""
    totals = {"received": 0.0, "duplicates": 0.0}
    for name in testbed.plan.nodes:
        found = counters(testbed, name)
        totals["received"] += found["received"]
        totals["duplicates"] += found["duplicate"] + found["spurious"]
    return totals


def evaluate(profile: Profile, results: dict) -> list[str]:
    """The thresholds this run breached, worded for the summary."""
    checks = {
        "p95_ttfb_ms": (
            results["p95_ttfb_ms"],
            lambda v, t: v <= t,
            "p95 time to first byte {v:.0f} ms > {t:.0f} ms",
        ),
        "max_error_ratio": (results["error_ratio"], lambda v, t: v <= t, "error ratio {v:.4f} > {t}"),
        "min_mb_s": (
            results["download_mb_s"],
            lambda v, t: v >= t,
            "download throughput {v:.2f} MB/s < {t} MB/s",
        ),
        "max_duplicate_ratio": (
            results["duplicate_ratio"],
            lambda v, t: v <= t,
            "duplicate ratio {v:.4f} > {t}",
        ),
        "p95_want_block_ms": (
            results.get("bx_want_block_p95_ms", 0.0),
            lambda v, t: v <= t,
            "p95 BlockExchange want-block latency {v:.0f} ms > {t:.0f} ms",
        ),
    }
    breaches = []
    for key, limit in profile.thresholds.items():
        value, passes, wording = checks[key]
        if not passes(value, limit):
            breaches.append(wording.format(v=value, t=limit))
    return breaches


def plot(run_dir: Path) -> list[str]:
    """throughput.png and latency.png from Locust's per-second history, one line per node."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (run_dir / "run_stats_history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    start = int(rows[0]["Timestamp"]) if rows else 0
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        if row["Name"].startswith("download@") or row["Name"] == "ttfb":
            p95 = row["95%"]
            size = float(row["Total Average Content Size"] or 0)
            series.setdefault(row["Name"], []).append(
                (
                    int(row["Timestamp"]) - start,
                    float(row["Requests/s"]) * size / 1e6,
                    float(p95) if p95 != "N/A" else 0,
                )
            )
    files = []
    for filename, index, ylabel, names in (
        ("throughput.png", 1, "MB/s", [n for n in series if n.startswith("download@")]),
        ("latency.png", 2, "p95 time to first byte (ms)", ["ttfb"]),
    ):
        figure, axes = plt.subplots(figsize=(8, 4))
        for name in names:
            points = series[name]
            axes.plot(
                [p[0] for p in points], [p[index] for p in points], label=name.removeprefix("download@")
            )
        axes.set_xlabel("seconds")
        axes.set_ylabel(ylabel)
        if names:
            axes.legend()
        figure.tight_layout()
        figure.savefig(run_dir / filename)
        plt.close(figure)
        files.append(filename)
    return files


def compare(results: dict, baseline: dict) -> list[str]:
    lines = ["| metric | baseline | this run | change |", "|---|---|---|---|"]
    for key in (
        "download_mb_s",
        "requests_s",
        "p50_ttfb_ms",
        "p95_ttfb_ms",
        "error_ratio",
        "duplicate_ratio",
    ):
        old, new = baseline.get(key), results[key]
        change = f"{(new - old) / old:+.1%}" if old else "n/a"
        lines.append(f"| {key} | {old} | {new:.4g} | {change} |")
    return lines


def summary(profile: Profile, results: dict, breaches: list[str], baseline: dict | None) -> str:
    verdict = "PASS" if not breaches else "FAIL"
    lines = [
        f"# Load gate `{profile.name}`: {verdict}",
        "",
        f"Topology `{profile.topology}`, {profile.users} users, {profile.run_time_s} s, mix {profile.mix}, "
        f"generator: {results['generator']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| download throughput | {results['download_mb_s']:.2f} MB/s |",
        f"| requests/s | {results['requests_s']:.2f} |",
        f"| time to first byte p50 / p95 | {results['p50_ttfb_ms']:.0f} / {results['p95_ttfb_ms']:.0f} ms |",
        f"| error ratio | {results['error_ratio']:.4f} ({results['failures']} of {results['requests']}) |",
        f"| duplicate-block ratio | {results['duplicate_ratio']:.4f} |",
        f"| BlockExchange p95 want-have / want-block | {results.get('bx_want_have_p95_ms', 0):.0f} / "
        f"{results.get('bx_want_block_p95_ms', 0):.0f} ms ({results.get('bx_requests_s', 0):.1f} req/s) |",
        f"| generator ceiling | {results['generator_ceiling']['mb_s']:.1f} MB/s, "
        f"{results['generator_ceiling']['req_s']:.0f} req/s |",
        "",
    ]
    if results["generator_ceiling"]["mb_s"] < 2 * results["download_mb_s"]:
        lines += ["**Warning**: the generator's ceiling is less than twice the measured rate.", ""]
    lines += [f"- breached: {b}" for b in breaches] or ["All thresholds held."]
    if baseline:
        lines += ["", "## Against the baseline", "", *compare(results, baseline)]
    lines += ["", "Plots: throughput.png, latency.png. Locust's report: run.html."]
    return "\n".join(lines) + "\n"


LoadGenerator = tuple[Execute, AbstractContextManager[str]]  # how Locust runs, the ceiling's server


def generator(testbed: Testbed, profile: Profile, run_dir: Path) -> LoadGenerator:
    """How Locust runs against `testbed` (host process, or worker containers on its WAN) and the
    static server of the generator's ceiling."""
    if profile.workers:
        image = images.ensure_images({"loadgen"}, log=lambda _: None)["loadgen"]
        fleet = Fleet(testbed, profile.workers, image)
        return fleet.run, fleet.static_server()
    return run_on_host, loopback_static_server(run_dir)


def measure(
    testbed: Testbed, profile: Profile, execute: Execute, run_dir: Path, prefix: str, run_time_s: int
) -> dict:
    """One Locust run of the profile's load against `testbed`: its numbers (Locust's CSVs under
    `prefix`, the nodes' BlockExchange counters before and after)."""
    before = _block_counters(testbed)
    config = {
        "nodes": {name: node.api_url for name, node in testbed.plan.nodes.items()},
        "sizes": profile.sizes,
        "mix": profile.mix,
        "downloaders_on": profile.downloaders_on,
    }
    if "BlockExchange" in profile.mix:
        config["bx_peers"] = {name: bx_peer(testbed, name) for name in testbed.plan.nodes}
    run = LocustRun(prefix, list(profile.mix), profile.users, profile.spawn_rate, run_time_s)
    execute(run, config, run_dir)
    after = _block_counters(testbed)
    stats = _stats(run_dir, prefix)
    counted = [
        row for name, row in stats.items() if name in ("upload", "download", "want-have", "want-block")
    ]
    requests_total = sum(int(row["Request Count"]) for row in counted)
    failures = sum(int(row["Failure Count"]) for row in counted)
    ttfb = stats.get("ttfb", {})
    received = after["received"] - before["received"]
    duplicates = after["duplicates"] - before["duplicates"]
    return {
        "download_mb_s": _bytes(stats["download"]) / run_time_s / 1e6 if "download" in stats else 0.0,
        "requests_s": sum(float(row["Requests/s"]) for row in counted),
        "p50_ttfb_ms": float(ttfb.get("50%") or 0),
        "p95_ttfb_ms": float(ttfb.get("95%") or 0),
        "requests": requests_total,
        "failures": failures,
        "error_ratio": failures / requests_total if requests_total else 1.0,
        "blocks_received": received,
        "duplicate_blocks": duplicates,
        "duplicate_ratio": duplicates / received if received else 0.0,
        "bx_want_have_p95_ms": float(stats.get("want-have", {}).get("95%") or 0),
        "bx_want_block_p95_ms": float(stats.get("want-block", {}).get("95%") or 0),
        "bx_requests_s": sum(
            float(stats[n]["Requests/s"]) for n in ("want-have", "want-block") if n in stats
        ),
    }


def generator_name(profile: Profile) -> str:
    return f"{profile.workers} worker containers" if profile.workers else "host"


def run_gate(
    profile: Profile,
    baseline_file: Path | None = None,
    out: Path | None = None,
    build: BuildUnderTest | None = None,
) -> tuple[Path, bool]:
    """Run one profile end to end against `build`; returns (report folder, passed)."""
    run_dir = out or artifacts_dir("load") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with Testbed.up(profile.topology, log=lambda _: None, build=build or BuildUnderTest()) as testbed:
        execute, server = generator(testbed, profile, run_dir)
        ceiling = measure_ceiling(run_dir, profile.users, execute, server)
        measured = measure(testbed, profile, execute, run_dir, "run", profile.run_time_s)
    results = {
        "profile": profile.name,
        "generator": generator_name(profile),
        **measured,
        "generator_ceiling": ceiling,
    }
    breaches = evaluate(profile, results)
    results["breaches"] = breaches
    baseline = json.loads(baseline_file.read_text()) if baseline_file else None
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(run_dir)
    (run_dir / "summary.md").write_text(summary(profile, results, breaches, baseline))
    return run_dir, not breaches
