"""`make bench` (scale): N storage nodes on one machine, the testbed against bare compose of the
same rendered file, at N = 25, 50, 100 (`BENCH_SCALE_SIZES="25 50 100"` to choose).

The topology is a star: every node's planned peer is `n000` (peering: none), as nodes join a
network through one bootstrap node. Per N:
- bare compose: `up -d` of the rendered file, then until every node's API answers, then `down -v`;
- the testbed: `Testbed.up` (allocate, render, `up -d`, plumbing, readiness: every node answers
  and is connected to `n000`), its readiness alone, `down`;
- memory per node: the median of the nodes' cgroup memory once ready (docker stats, one read).
Prints a table and writes bench-results/scale.json, and each readiness report (its steps) to
bench-results/scale-N-readiness.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from harness.engine import compose, images
from harness.engine.bootstrap import ensure_engine
from harness.paths import REPO_ROOT
from harness.ready.readiness import ANSWERING, ReadinessReport, wait_conditions
from harness.render.compose import render
from harness.sweep import sweep
from harness.testbed import Testbed
from harness.topology import loader, subnets
from harness.topology.model import HEALTHCHECK_RARELY_S, Topology
from harness.topology.plan import make_plan, new_project_name
from harness.waits import Deadline

SIZES = tuple(int(n) for n in os.environ.get("BENCH_SCALE_SIZES", "25 50 100").split())
RESULTS = REPO_ROOT / "bench-results"
DEADLINE_S = 900  # one bring-up of 100 nodes on two cores
IMPL = "logos-storage"


def star(n: int) -> Topology:
    nodes: dict[str, dict] = {"n000": {"kind": "codex", "impl": IMPL}}
    nodes |= {f"n{i:03d}": {"kind": "codex", "impl": IMPL, "peers": ["n000"]} for i in range(1, n)}
    document = {
        "name": f"scale-{n}",
        "description": f"{n} nodes joined through one (suites/bench/scale.py)",
        "peering": "none",
        "healthcheck_interval": HEALTHCHECK_RARELY_S,
        "nodes": nodes,
    }
    return loader.parse(yaml.safe_dump(document), Path(f"<bench scale {n}>"))


def timed(action) -> tuple[float, object]:
    start = time.monotonic()
    result = action()
    return time.monotonic() - start, result


def bare_compose(model: Topology) -> dict[str, float]:
    project = new_project_name(f"bench-bare-{len(model.nodes)}")
    refs = images.ensure_images(model.images(), log=lambda _: None)
    plan = make_plan(model, subnets.reserve(project, model.network_kinds()), refs, project=project)
    compose_file = render(plan)
    try:
        up_s, _ = timed(lambda: compose.up(project, compose_file, timeout_s=DEADLINE_S))
        answering_s, _ = timed(
            lambda: wait_conditions(plan, Deadline(DEADLINE_S), ReadinessReport(project), kinds=ANSWERING)
        )
        down_s, _ = timed(lambda: compose.down(project, compose_file, timeout_s=DEADLINE_S))
    finally:
        sweep(project)
    return {"up_d_s": up_s, "until_answering_s": up_s + answering_s, "down_s": down_s}


def memory_per_node_mib(testbed: Testbed) -> float:
    """The median node's memory use (cgroup, as `docker stats` shows it)."""
    found = testbed.containers()
    containers = [found[name] for name in testbed.plan.nodes]
    with ThreadPoolExecutor(16) as pool:
        stats = list(pool.map(lambda c: c.stats(stream=False), containers))
    return statistics.median(s["memory_stats"]["usage"] for s in stats) / 2**20


def with_testbed(model: Topology) -> dict[str, float]:
    up_s, testbed = timed(lambda: Testbed.up(model, log=lambda _: None, deadline_s=DEADLINE_S))
    try:
        memory = memory_per_node_mib(testbed)
        report = testbed.readiness
    finally:
        down_s, _ = timed(testbed.down)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{len(model.nodes)}-readiness.json").write_text(report.to_json())
    peering = [step.seconds for step in report.steps if step.layer == "peering"]
    return {
        "up_s": up_s,
        "readiness_s": report.total_s,
        "peering_s": sum(peering),
        "down_s": down_s,
        "memory_per_node_mib": memory,
    }


def main() -> None:
    print(ensure_engine())
    results: dict[str, dict] = {"compose": " ".join(compose.compose_command())}
    for n in SIZES:
        model = star(n)
        print(f"scale: {n} nodes, bare compose ...", flush=True)
        bare = bare_compose(model)
        print(f"scale: {n} nodes, testbed ...", flush=True)
        ours = with_testbed(model)
        results[str(n)] = {
            "bare_compose": bare,
            "testbed": ours,
            "ratio": ours["up_s"] / bare["until_answering_s"],
        }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "scale.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nbench: scale ({results['compose']}; star topology, Logos-era reference nodes)")
    print(
        "  N    bare up -d  bare answering  testbed up  of which ready  of which peering  ratio"
        "  down bare/testbed  MiB/node"
    )
    for n in SIZES:
        bare, ours = results[str(n)]["bare_compose"], results[str(n)]["testbed"]
        print(
            f"  {n:<4} {bare['up_d_s']:9.1f}s {bare['until_answering_s']:14.1f}s {ours['up_s']:10.1f}s "
            f"{ours['readiness_s']:14.1f}s {ours['peering_s']:16.1f}s {results[str(n)]['ratio']:6.2f} "
            f"{bare['down_s']:8.1f}s/{ours['down_s']:.1f}s {ours['memory_per_node_mib']:9.0f}"
        )
    print(f"\nwritten: {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
