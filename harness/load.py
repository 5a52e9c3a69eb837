"""The release gate: Locust against a ready testbed, thresholds, reports, plots, baseline diff.

`testbed load --profile <name>` brings the profile's topology up, runs Locust headless for a
bounded time (Locust's own --run-time; the subprocess also has a hard deadline), then reads
Locust's CSVs and the nodes' Prometheus counters, applies the profile's thresholds and writes
results.json, summary.md, throughput.png, latency.png and Locust's CSV/HTML under
artifacts/load/<profile>-<time>/. Exit code 2 means a threshold was breached.
Before the run, the same Locust setup fetches a file from a trivial local static server: the
generator's own ceiling, so a slow generator is never mistaken for a slow node.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.clients.codex import dialable_addresses
from harness.errors import TestbedError
from harness.paths import REPO_ROOT, artifacts_dir
from harness.testbed import Testbed

PROFILES = REPO_ROOT / "suites" / "load" / "profiles.yaml"
LOCUSTFILE = REPO_ROOT / "suites" / "load" / "locustfile.py"
CEILING_SECONDS = 8
CEILING_FILE_BYTES = 1024 * 1024
DUPLICATES = (
    "codex_block_exchange_duplicate_blocks_received_total",
    "codex_block_exchange_spurious_blocks_received_total",
)
RECEIVED = "codex_block_exchange_blocks_received_total"


@dataclass(frozen=True)
class Profile:
    name: str
    topology: str
    users: int
    spawn_rate: float
    run_time_s: int
    mix: dict[str, int]
    sizes: list[list[int]]
    thresholds: dict[str, float]
    downloaders_on: list[str] | None = None


def load_profile(name: str, overrides: dict[str, float] | None = None) -> Profile:
    profiles = yaml.safe_load(PROFILES.read_text())
    if name not in profiles:
        raise TestbedError(f"{PROFILES}: no load profile {name!r} (profiles: {', '.join(profiles)})")
    raw = dict(profiles[name])
    raw["thresholds"] = {**raw["thresholds"], **(overrides or {})}
    return Profile(name=name, **raw)


def _locust(config: dict, run_dir: Path, prefix: str, classes: list[str], users: int, rate: float, secs: int):
    config_file = run_dir / f"{prefix}-config.json"
    config_file.write_text(json.dumps(config))
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--users", str(users), "--spawn-rate", str(rate), "--run-time", f"{secs}s", "--stop-timeout", "10",
        "--csv", str(run_dir / prefix), "--csv-full-history", "--html", str(run_dir / f"{prefix}.html"),
        "--exit-code-on-error", "0", *classes,
    ]  # fmt: skip
    env = {**os.environ, "TESTBED_LOAD_CONFIG": str(config_file)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 120)
    (run_dir / f"{prefix}-locust.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise TestbedError(f"locust ({prefix}) failed ({result.returncode}):\n{result.stderr[-2000:]}")


def _stats(run_dir: Path, prefix: str) -> dict[str, dict[str, str]]:
    with (run_dir / f"{prefix}_stats.csv").open() as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def _bytes(row: dict[str, str]) -> float:
    return float(row["Average Content Size"]) * int(row["Request Count"])


def measure_ceiling(run_dir: Path, users: int) -> dict[str, float]:
    """Locust against a static file on loopback, with the run's user count."""
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
        config = {"nodes": {}, "sizes": [], "ceiling_url": f"http://127.0.0.1:{server.server_port}/blob"}
        _locust(config, run_dir, "ceiling", ["CeilingUser"], users, users, CEILING_SECONDS)
    finally:
        server.shutdown()
        shutil.rmtree(static)
    row = _stats(run_dir, "ceiling")["ceiling"]
    return {"req_s": float(row["Requests/s"]), "mb_s": _bytes(row) / CEILING_SECONDS / 1e6}


@contextmanager
def bx_agent(log: Path):
    """The BlockExchange agent process (suites/load/bxagent.py); yields its loopback port."""
    paths = [str(REPO_ROOT), str(REPO_ROOT / "images" / "codex-ref")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with log.open("wb") as errors:
        agent = subprocess.Popen(
            [sys.executable, "-m", "suites.load.bxagent"], stdout=subprocess.PIPE, stderr=errors, env=env
        )
    try:
        line = agent.stdout.readline() if agent.stdout else b""
        if not line:
            raise TestbedError(f"the BlockExchange agent did not start; see {log}")
        yield json.loads(line)["port"]
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def _bx_peer(testbed: Testbed, node: str) -> dict:
    info = testbed.client(node).debug_info()
    return {"peer": info["id"], "addrs": dialable_addresses(info)}


def _block_counters(testbed: Testbed) -> dict[str, float]:
    totals = {"received": 0.0, "duplicates": 0.0}
    for node in testbed.plan.nodes:
        samples = testbed.metrics(node)
        totals["received"] += samples.get(RECEIVED, 0)
        totals["duplicates"] += sum(samples.get(name, 0) for name in DUPLICATES)
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
        f"Topology `{profile.topology}`, {profile.users} users, {profile.run_time_s} s, mix {profile.mix}.",
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


def run_gate(
    profile: Profile, baseline_file: Path | None = None, out: Path | None = None
) -> tuple[Path, bool]:
    """Run one profile end to end; returns (report folder, passed)."""
    run_dir = out or artifacts_dir("load") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    ceiling = measure_ceiling(run_dir, profile.users)
    with Testbed.up(profile.topology, log=lambda _: None) as testbed:
        before = _block_counters(testbed)
        config = {
            "nodes": {name: node.api_url for name, node in testbed.plan.nodes.items()},
            "sizes": profile.sizes,
            "mix": profile.mix,
            "downloaders_on": profile.downloaders_on,
        }
        with ExitStack() as stack:
            if "BlockExchange" in profile.mix:
                config["bx_agent_port"] = stack.enter_context(bx_agent(run_dir / "bxagent.log"))
                config["bx_peers"] = {name: _bx_peer(testbed, name) for name in testbed.plan.nodes}
            _locust(
                config,
                run_dir,
                "run",
                list(profile.mix),
                profile.users,
                profile.spawn_rate,
                profile.run_time_s,
            )
        after = _block_counters(testbed)
    stats = _stats(run_dir, "run")
    counted = [
        row for name, row in stats.items() if name in ("upload", "download", "want-have", "want-block")
    ]
    requests_total = sum(int(row["Request Count"]) for row in counted)
    failures = sum(int(row["Failure Count"]) for row in counted)
    ttfb = stats.get("ttfb", {})
    received = after["received"] - before["received"]
    results = {
        "profile": profile.name,
        "download_mb_s": _bytes(stats["download"]) / profile.run_time_s / 1e6 if "download" in stats else 0.0,
        "requests_s": sum(float(row["Requests/s"]) for row in counted),
        "p50_ttfb_ms": float(ttfb.get("50%") or 0),
        "p95_ttfb_ms": float(ttfb.get("95%") or 0),
        "requests": requests_total,
        "failures": failures,
        "error_ratio": failures / requests_total if requests_total else 1.0,
        "duplicate_ratio": (after["duplicates"] - before["duplicates"]) / received if received else 0.0,
        "generator_ceiling": ceiling,
        "bx_want_have_p95_ms": float(stats.get("want-have", {}).get("95%") or 0),
        "bx_want_block_p95_ms": float(stats.get("want-block", {}).get("95%") or 0),
        "bx_requests_s": sum(
            float(stats[n]["Requests/s"]) for n in ("want-have", "want-block") if n in stats
        ),
    }
    breaches = evaluate(profile, results)
    results["breaches"] = breaches
    baseline = json.loads(baseline_file.read_text()) if baseline_file else None
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(run_dir)
    (run_dir / "summary.md").write_text(summary(profile, results, breaches, baseline))
    return run_dir, not breaches
