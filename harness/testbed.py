"""Testbed: bring a topology up ready, hand out node clients, collect evidence, tear down.

    with Testbed.up("basic") as tb:
        cid = tb.client("codex-1").upload(b"hello")

Teardown is guaranteed: `down()` runs from the context manager, and until a testbed is downed
(or deliberately kept, as `testbed up` on the command line does) it is also downed by atexit
and by SIGINT/SIGTERM handlers. After a SIGKILL, `testbed clean` removes everything by label.
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from harness.clients.codex import CodexClient
from harness.clients.metrics import scrape
from harness.clients.status import StatusClient
from harness.engine import compose, images
from harness.engine.bootstrap import ensure_engine
from harness.engine.files import copy_out
from harness.errors import EngineError
from harness.labels import check_project, find_containers
from harness.net import hostfw, neighbours
from harness.net.plumbing import check_tcp_congestion, plumb
from harness.paths import artifacts_dir, generated_dir
from harness.ready.readiness import BACK, ReadinessReport, wait_conditions, wait_ready
from harness.render.compose import render
from harness.selection import BuildUnderTest
from harness.sweep import leftovers, sweep
from harness.topology import loader, subnets
from harness.topology.model import Topology
from harness.topology.plan import PCAP_DIR, Plan, make_plan, new_project_name
from harness.waits import Deadline

DEFAULT_DEADLINE_S = 180.0

_armed: dict[str, Testbed] = {}
_handlers_installed = False


def _down_all_armed() -> None:
    for testbed in list(_armed.values()):
        testbed.down()


def _on_signal(signum: int, frame) -> None:
    _down_all_armed()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    atexit.register(_down_all_armed)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _on_signal)
    _handlers_installed = True


class Testbed:
    __test__ = False  # not a pytest test class

    def __init__(self, plan: Plan, compose_file: Path) -> None:
        self.plan = plan
        self.compose_file = compose_file
        self.readiness = ReadinessReport(plan.project)
        self._clients: dict[str, CodexClient] = {}
        self._status: dict[str, StatusClient] = {}
        self._down = False

    # -- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        topology: str | Path | Topology,
        project: str | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
        log: Callable[[str], None] = print,
        build: BuildUnderTest | None = None,
    ) -> Testbed:
        """Validate, build images, allocate, render, start and wait. Fails with nothing left behind.
        `build` chooses the storage nodes' image and contract (default: the reference node)."""
        # a broken file stops here, before anything is created
        model = topology if isinstance(topology, Topology) else loader.load(topology)
        if build is not None:
            model = build.apply(model)
        if project is not None:
            check_project(project)
        kinds = model.network_kinds()
        subnets.check_host(kinds)  # so does a broken address pool
        check_tcp_congestion(model)  # and a congestion control the kernel refuses containers
        neighbours.warn_if_short(model, lambda line: print(line, file=sys.stderr))  # even when `log` is quiet
        log(ensure_engine())
        refs = images.ensure_images(model.images(), log=log)
        project = project or new_project_name(model.name)
        reserved = subnets.reserve(project, kinds)
        try:
            plan = make_plan(model, reserved, refs, project=project)
            testbed = cls(plan, render(plan))
        except BaseException:
            subnets.release(project)
            raise
        testbed.arm()
        try:
            compose.up(plan.project, testbed.compose_file)
            # NATs need the guard; without LANs, docker's `internal` WAN already isolates, so
            # an engine without iptables on the host (Docker Desktop) still runs those.
            if plan.routers or hostfw.available():
                hostfw.isolate(plan)
            # Plumbing starts a helper container per node; it runs while the nodes boot.
            with ThreadPoolExecutor(1) as pool:
                plumbing = pool.submit(plumb, plan, testbed.containers())
                wait_ready(plan, deadline_s, testbed.readiness, plumbing=plumbing)
        except BaseException:
            testbed.save_artifacts()
            testbed.down()
            raise
        return testbed

    def arm(self) -> None:
        """Make sure this testbed is downed at exit or on SIGINT/SIGTERM."""
        _install_handlers()
        _armed[self.plan.project] = self

    def keep(self) -> None:
        """Leave the testbed running after this process exits (the CLI's `up`)."""
        _armed.pop(self.plan.project, None)

    def down(self) -> str:
        """Tear down; returns a one-line account (see down_project). Safe to call twice."""
        _armed.pop(self.plan.project, None)
        if self._down:
            return "already down"
        self._down = True
        for client in self._clients.values():
            client.session.close()
        for status in self._status.values():
            status.close()
        return down_project(self.plan.project)

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc_info) -> None:
        self.down()

    # -- access ---------------------------------------------------------------------------------------
    def client(self, node: str, timeout_s: float = 60) -> CodexClient:
        if node not in self._clients:
            self._clients[node] = CodexClient(self.plan.nodes[node].api_url, timeout_s=timeout_s)
        return self._clients[node]

    def status(self, peer: str) -> StatusClient:
        """A client of a status peer's status-backend surface (signals buffered from now on)."""
        if peer not in self._status:
            self._status[peer] = StatusClient(self.plan.status[peer].url)
        return self._status[peer]

    def containers(self) -> dict:
        return find_containers(docker.from_env(), self.plan.project)

    def container(self, node: str):
        return self.containers()[node]

    def metrics(self, node: str) -> dict[str, float]:
        """The node's Prometheus samples (counters as `<name>_total`)."""
        return scrape(self.plan.nodes[node].metrics_url)

    def metric(self, node: str, name: str, samples: dict[str, float] | None = None) -> float:
        """One of the node's storage metrics, named without its era's prefix (`codex_` or
        `storage_`): `block_exchange_blocks_sent_total`. 0 when the node does not export it."""
        samples = self.metrics(node) if samples is None else samples
        return samples.get(self.plan.nodes[node].profile.metric_prefix + name, 0.0)

    def kill(self, node: str) -> None:
        """SIGKILL one node: no goodbye to its peers, as a crash or power loss."""
        self.container(node).kill()

    def stop(self, node: str, timeout_s: int = 10) -> int:
        """Stop one node (SIGTERM, then SIGKILL after timeout_s); returns its exit code."""
        container = self.container(node)
        container.stop(timeout=timeout_s)
        container.reload()
        return container.attrs["State"]["ExitCode"]

    def start(self, node: str, deadline_s: float = 60) -> None:
        """Start a stopped node (re-plumbing its routes) and wait until it is back: its API
        answers, it announces its planned address and holds its relay reservation again."""
        self.container(node).start()
        plumb(self.plan, {node: self.container(node)})
        subset = Plan(**{**self.plan.__dict__, "nodes": {node: self.plan.nodes[node]}})
        wait_conditions(subset, Deadline(deadline_s), ReadinessReport(self.plan.project), kinds=BACK)

    def restart(self, node: str, deadline_s: float = 60) -> int:
        """Stop and start one node; returns the exit code of the stop."""
        exit_code = self.stop(node)
        self.start(node, deadline_s)
        return exit_code

    # -- evidence -------------------------------------------------------------------------------------
    def save_artifacts(self, dest: Path | None = None) -> Path:
        """Container logs, rendered compose, node env files, plan, readiness report, and the
        routers' captures where a LAN asked for `pcap: true`."""
        dest = dest or artifacts_dir(self.plan.project)
        dest.mkdir(parents=True, exist_ok=True)
        source = generated_dir(self.plan.project)
        if source.exists():
            shutil.copytree(source, dest / "rendered", dirs_exist_ok=True)
        (dest / "readiness.json").write_text(self.readiness.to_json())
        if self.readiness.nat:
            (dest / "nat-check.json").write_text(json.dumps(self.readiness.nat, indent=2))
        try:
            containers = self.containers()
            for name, container in containers.items():
                (dest / f"{name}.log").write_bytes(container.logs(timestamps=True))
            for router in self.plan.routers.values():
                if router.pcap and router.name in containers:
                    copy_out(containers[router.name], PCAP_DIR, dest / "pcap", prefix=f"{router.name}-")
        except docker.errors.DockerException as exc:
            (dest / "logs-unavailable.txt").write_text(str(exc))
        return dest


def down_project(project: str) -> str:
    """compose down when the rendered file is still there, then a label sweep for anything left.
    Returns what was removed and what is left, counted by label."""
    before = leftovers(project)
    compose_file = generated_dir(project) / "compose.yaml"
    if compose_file.exists():
        try:
            compose.down(project, compose_file)
        except EngineError as exc:
            print(f"warning: compose down failed, sweeping by label: {exc}", file=sys.stderr)
    report = sweep(project)
    after = leftovers(project)
    removed = ", ".join(f"{before[kind] - after[kind]} {kind}" for kind in before)
    left = sum(after.values())
    errors = f"; errors: {'; '.join(report.errors)}" if report.errors else ""
    return f"removed {removed}; {left} left{errors}"
