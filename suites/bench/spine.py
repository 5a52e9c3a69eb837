"""`make bench`: how long bringing `basic` up and down takes, cold and warm, against bare compose.

Prints a table and writes bench-results/spine.json. Cold = base image and service images removed
first, so debootstrap, docker import and the image build are all in the number; the engine's own
cold cost (install + start) is read from the project cache, where `make setup` recorded it.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path

import docker
from docker.errors import ImageNotFound

from harness import imagerefs
from harness.engine import compose, images
from harness.engine.bootstrap import ensure_engine
from harness.paths import REPO_ROOT, cache_dir
from harness.ready.readiness import ANSWERING, ReadinessReport, wait_conditions
from harness.render.compose import render
from harness.sweep import sweep
from harness.testbed import Testbed
from harness.topology import loader, subnets
from harness.topology.plan import Plan, make_plan, new_project_name
from harness.waits import Deadline

TOPOLOGY = "basic"
WARM_RUNS = 3
RESULTS = REPO_ROOT / "bench-results"


def timed(action) -> tuple[float, object]:
    start = time.monotonic()
    result = action()
    return time.monotonic() - start, result


def remove_images() -> None:
    client = docker.from_env()
    refs = [imagerefs.base_image_ref(), *images.image_refs(set(images.SERVICE_IMAGES)).values()]
    for ref in refs:
        with contextlib.suppress(ImageNotFound):
            client.images.remove(ref, force=True)


def quiet(_line: str) -> None:
    return None


def cold_up_down() -> dict[str, float]:
    remove_images()
    up_s, testbed = timed(lambda: Testbed.up(TOPOLOGY, log=quiet))
    down_s, _ = timed(testbed.down)
    return {"up_s": up_s, "down_s": down_s}


def warm_up_down() -> dict[str, float]:
    ups, downs, ready = [], [], []
    for _ in range(WARM_RUNS):
        up_s, testbed = timed(lambda: Testbed.up(TOPOLOGY, log=quiet))
        ready.append(testbed.readiness.total_s)
        down_s, _ = timed(testbed.down)
        ups.append(up_s)
        downs.append(down_s)
    return {
        "up_s": statistics.median(ups),
        "down_s": statistics.median(downs),
        "readiness_s": statistics.median(ready),
    }


def bare_compose() -> dict[str, float]:
    """The same rendered file driven by the compose CLI alone, plus how long until every node's
    API answers (the first two readiness layers)."""
    model = loader.load(TOPOLOGY)
    project = new_project_name("bench-bare")
    refs = images.ensure_images({"codex-ref"}, log=quiet)
    kinds = model.network_kinds()
    plan = make_plan(model, subnets.reserve(project, kinds), refs, project=project)
    compose_file = render(plan)
    try:
        up_s, _ = timed(lambda: compose.up(project, compose_file))
        answering_s, _ = timed(lambda: until_nodes_answer(plan))
        down_s, _ = timed(lambda: compose.down(project, compose_file))
    finally:
        sweep(project)
    return {"up_d_s": up_s, "until_answering_s": up_s + answering_s, "down_s": down_s}


def until_nodes_answer(plan: Plan) -> None:
    wait_conditions(plan, Deadline(120), ReadinessReport(plan.project), kinds=ANSWERING)


def main() -> None:
    print(ensure_engine())
    engine_file = cache_dir() / "engine-timings.json"
    engine = json.loads(engine_file.read_text()) if engine_file.exists() else {}
    results = {
        "compose": " ".join(compose.compose_command()),
        "engine_cold": engine,
        "cold": cold_up_down(),
        "warm": warm_up_down(),
        "bare_compose": bare_compose(),
    }
    RESULTS.mkdir(exist_ok=True)
    out = Path(RESULTS / "spine.json")
    out.write_text(json.dumps(results, indent=2))
    rows = [
        ("engine install (first make setup)", engine.get("install_s")),
        ("engine start (dockerd until it answers)", engine.get("start_s")),
        ("cold testbed up: debootstrap base + images + up + ready", results["cold"]["up_s"]),
        ("cold testbed down", results["cold"]["down_s"]),
        (f"warm testbed up, median of {WARM_RUNS} (incl. readiness)", results["warm"]["up_s"]),
        ("  of which readiness (running -> probe -> predicate)", results["warm"]["readiness_s"]),
        (f"warm testbed down, median of {WARM_RUNS}", results["warm"]["down_s"]),
        (f"bare `{results['compose']} up -d`, same rendered file", results["bare_compose"]["up_d_s"]),
        ("bare compose: up -d until every node answers", results["bare_compose"]["until_answering_s"]),
        ("bare compose down -v", results["bare_compose"]["down_s"]),
    ]
    print(f"\nbench: topology {TOPOLOGY} ({len(loader.load(TOPOLOGY).nodes)} nodes)")
    for label, value in rows:
        shown = f"{value:7.1f} s" if isinstance(value, int | float) else "    n/a (engine was already up)"
        print(f"  {label:<58} {shown}")
    print(f"\nwritten: {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
