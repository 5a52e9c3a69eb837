"""The A/B release gate: the candidate build and the last release's in one run, judged on ratios.

Both builds come up at once in the same topology shape, each as its own testbed. The profile's
load then runs on one and then the other, round after round, in ABBA order (the candidate first
in odd rounds, the baseline first in even ones), so the machine's drift during the run hits both
builds alike. Each round pairs the two builds' numbers:

- ratio metrics (throughput, time to first byte p50/p95, BlockExchange want-block p95): per round
  a factor where below 1 means the candidate is worse (candidate / baseline for throughput,
  baseline / candidate for latencies); their geometric mean and a bootstrap interval of it over
  the rounds. A metric regressed when the whole interval lies below 1 (worse consistently, not
  by noise) and the mean is below 1 - tolerance (worse by enough to matter).
- count metrics (error ratio, duplicate-block ratio): pooled over the rounds; regressed when the
  candidate's exceeds the baseline's by more than the profile's allowance.

An interval's width is the gate's resolution on the machine it ran on: a regression smaller than
that cannot be told from noise.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import TestbedError
from harness.experiments import load
from harness.experiments.profiles import (
    COUNT_METRICS,
    HIGHER_IS_BETTER,
    PROFILES,
    RATIO_METRICS,
    ABPlan,
    Profile,
)
from harness.paths import artifacts_dir
from harness.selection import BuildUnderTest
from harness.testbed import Testbed

BUILDS = ("candidate", "baseline")
RESAMPLES = 4000
NOT_MEASURED, NO_DIFFERENCE, WORSE, BETTER = "not measured", "no difference", "WORSE", "better"


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: float  # the build's median over the rounds (ratio metrics) or pooled value (counts)
    candidate: float
    rounds: int  # rounds in which both builds measured it
    verdict: str
    limit: float  # the tolerance or allowance
    ratio: float | None = None  # ratio metrics: geometric mean, below 1 the candidate is worse
    low: float | None = None
    high: float | None = None


def goodness(metric: str, candidate: float, baseline: float) -> float | None:
    """The candidate against the baseline in one round, below 1 worse; None unless both measured."""
    if candidate <= 0 or baseline <= 0:
        return None
    higher_is_better = RATIO_METRICS[metric][2] == HIGHER_IS_BETTER
    return candidate / baseline if higher_is_better else baseline / candidate


def interval(logs: list[float], confidence: float, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the geometric mean, from the rounds' log ratios (seeded:
    the same rounds give the same interval)."""
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(RESAMPLES))
    tail = (1 - confidence) / 2
    return math.exp(means[int(tail * RESAMPLES)]), math.exp(means[math.ceil((1 - tail) * RESAMPLES) - 1])


def compare_ratio(metric: str, rounds: list[dict], tolerance: float, confidence: float) -> Comparison:
    pairs = [(r["candidate"][metric], r["baseline"][metric]) for r in rounds]
    logs = [math.log(g) for c, b in pairs if (g := goodness(metric, c, b)) is not None]
    measured = [(c, b) for c, b in pairs if c > 0 and b > 0]
    if RATIO_METRICS[metric][2] == HIGHER_IS_BETTER and any(c <= 0 < b for c, b in pairs):
        # a round in which the candidate delivered nothing where the baseline did: no ratio needed
        baseline = statistics.median(b for _, b in pairs)
        return Comparison(metric, baseline, 0.0, len(pairs), WORSE, tolerance)
    if len(logs) < 2:
        return Comparison(metric, 0.0, 0.0, len(logs), NOT_MEASURED, tolerance)
    ratio = math.exp(statistics.fmean(logs))
    low, high = interval(logs, confidence)
    verdict = NO_DIFFERENCE
    if high < 1 and ratio < 1 - tolerance:
        verdict = WORSE
    elif low > 1 and ratio > 1 + tolerance:
        verdict = BETTER
    return Comparison(
        metric,
        baseline=statistics.median(b for _, b in measured),
        candidate=statistics.median(c for c, _ in measured),
        rounds=len(logs),
        verdict=verdict,
        limit=tolerance,
        ratio=ratio,
        low=low,
        high=high,
    )


def compare_count(metric: str, rounds: list[dict], allowance: float) -> Comparison:
    _, numerator, denominator = COUNT_METRICS[metric]

    def pooled(build: str) -> float:
        total = sum(r[build][denominator] for r in rounds)
        return sum(r[build][numerator] for r in rounds) / total if total else 0.0

    candidate, baseline = pooled("candidate"), pooled("baseline")
    if candidate - baseline > allowance:
        verdict = WORSE
    elif baseline - candidate > allowance:
        verdict = BETTER
    else:
        verdict = NO_DIFFERENCE
    return Comparison(metric, baseline, candidate, len(rounds), verdict, allowance)


def compare(rounds: list[dict], plan: ABPlan) -> list[Comparison]:
    return [
        *(compare_ratio(m, rounds, plan.tolerances[m], plan.confidence) for m in RATIO_METRICS),
        *(compare_count(m, rounds, plan.allowances[m]) for m in COUNT_METRICS),
    ]


def describe(build: BuildUnderTest) -> str:
    return f"`{build.image}`" if build.image else "the reference node (built here)"


def words(metric: str) -> str:
    return (RATIO_METRICS.get(metric) or COUNT_METRICS[metric])[0]


ROUND_COLUMNS = (  # (header, results key, format) of the per-round table
    ("throughput MB/s", "download_mb_s", "{:.2f}"),
    ("TTFB p50 ms", "p50_ttfb_ms", "{:.0f}"),
    ("TTFB p95 ms", "p95_ttfb_ms", "{:.0f}"),
    ("want-block p95 ms", "bx_want_block_p95_ms", "{:.0f}"),
    ("failed requests", "failures", "{:.0f}"),
    ("duplicate blocks", "duplicate_blocks", "{:.0f}"),
)


def round_rows(rounds: list[dict]) -> list[str]:
    headers = " | ".join(header for header, _, _ in ROUND_COLUMNS)
    lines = [f"| round | first | {headers} |", "|---" * (len(ROUND_COLUMNS) + 2) + "|"]
    for r in rounds:
        cells = " | ".join(
            f"{form.format(r['candidate'][key])} / {form.format(r['baseline'][key])}"
            for _, key, form in ROUND_COLUMNS
        )
        lines.append(f"| {r['round']} | {r['order'][0]} | {cells} |")
    return lines


def comparison_row(c: Comparison) -> str:
    if c.verdict == NOT_MEASURED:
        return f"| {words(c.metric)} | | | | | | {c.verdict} |"
    if c.metric in COUNT_METRICS:
        limit = f"more than +{c.limit:g}"
        return f"| {words(c.metric)} | {c.baseline:.4f} | {c.candidate:.4f} | | | {limit} | {c.verdict} |"
    unit = RATIO_METRICS[c.metric][1]
    form = "{:.2f} " + unit if unit == "MB/s" else "{:.0f} " + unit
    limit = f"interval < 1, ratio < {1 - c.limit:.2f}"
    values = f"| {words(c.metric)} | {form.format(c.baseline)} | {form.format(c.candidate)} "
    if c.ratio is None:  # a round without any delivery
        return values + f"| | | nothing delivered in a round | {c.verdict} |"
    return values + f"| {c.ratio:.3f} | {c.low:.3f} to {c.high:.3f} | {limit} | {c.verdict} |"


def summary(profile: Profile, builds: dict[str, BuildUnderTest], rounds: list[dict], comparisons) -> str:
    plan = profile.ab
    assert plan is not None
    worse = [words(c.metric) for c in comparisons if c.verdict == WORSE]
    verdict = f"FAIL (the candidate is worse: {', '.join(worse)})" if worse else "PASS"
    return "\n".join([
        f"# Load gate `{profile.name}`, A/B: {verdict}",
        "",
        f"Candidate {describe(builds['candidate'])} against baseline {describe(builds['baseline'])}: "
        f"topology `{profile.topology}` twice, {profile.users} users, {plan.rounds} rounds of "
        f"{plan.round_time_s} s per build in ABBA order, generator: {load.generator_name(profile)}.",
        "",
        "## Rounds (candidate / baseline)",
        "",
        *round_rows(rounds),
        "",
        f"## The candidate against the baseline (ratio below 1: worse; {plan.confidence:.0%} interval)",
        "",
        "| metric | baseline | candidate | ratio | interval | worse if | verdict |",
        "|---|---|---|---|---|---|---|",
        *(comparison_row(c) for c in comparisons),
        "",
        "Plot: ab.png (both builds per round). Locust's reports: r<round>-<build>.html.",
    ]) + "\n"  # fmt: skip


def plot(run_dir: Path, rounds: list[dict]) -> None:
    """ab.png: each ratio metric per round, the two builds overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    numbers = [r["round"] for r in rounds]
    for ax, (metric, (words, unit, _)) in zip(axes.flat, RATIO_METRICS.items(), strict=True):
        for build, style in zip(BUILDS, ("o-", "s--"), strict=True):
            ax.plot(numbers, [r[build][metric] for r in rounds], style, label=build)
        ax.set_title(words)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
    for ax in axes[1]:
        ax.set_xlabel("round")
    axes.flat[0].legend()
    figure.tight_layout()
    figure.savefig(run_dir / "ab.png")
    plt.close(figure)


def _progress(round_: dict) -> str:
    parts = [
        f"{build} {round_[build]['download_mb_s']:.2f} MB/s, TTFB p95 {round_[build]['p95_ttfb_ms']:.0f} ms"
        for build in round_["order"]
    ]
    return f"round {round_['round']}: " + "; ".join(parts)


def run_ab(
    profile: Profile,
    candidate: BuildUnderTest,
    baseline: BuildUnderTest,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[Path, bool]:
    """Both builds up, the profile's load interleaved over them; returns (report folder, passed)."""
    plan = profile.ab
    if plan is None:
        raise TestbedError(f"{PROFILES}: profile {profile.name!r} has no `ab:` section for an A/B run")
    run_dir = out or artifacts_dir("load") / f"{profile.name}-ab-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    builds = {"candidate": candidate, "baseline": baseline}
    rounds: list[dict] = []
    with ExitStack() as stack:
        testbeds = {
            name: stack.enter_context(Testbed.up(profile.topology, log=lambda _: None, build=build))
            for name, build in builds.items()
        }
        generators = {name: load.generator(testbed, profile, run_dir) for name, testbed in testbeds.items()}
        execute, server = generators["candidate"]
        ceiling = load.measure_ceiling(run_dir, profile.users, execute, server)
        echo(f"both builds up; generator ceiling {ceiling['mb_s']:.0f} MB/s")
        for index in range(1, plan.rounds + 1):
            order = BUILDS if index % 2 else BUILDS[::-1]
            measured = {
                name: load.measure(
                    testbeds[name],
                    profile,
                    generators[name][0],
                    run_dir,
                    f"r{index}-{name}",
                    plan.round_time_s,
                )
                for name in order
            }
            rounds.append({"round": index, "order": list(order), **measured})
            echo(_progress(rounds[-1]))
    comparisons = compare(rounds, plan)
    passed = all(c.verdict != WORSE for c in comparisons)
    results = {
        "profile": profile.name,
        "mode": "ab",
        "builds": {name: describe(build) for name, build in builds.items()},
        "generator": load.generator_name(profile),
        "generator_ceiling": ceiling,
        "rounds": rounds,
        "comparisons": [asdict(c) for c in comparisons],
        "passed": passed,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(run_dir, rounds)
    (run_dir / "summary.md").write_text(summary(profile, builds, rounds, comparisons))
    return run_dir, passed
