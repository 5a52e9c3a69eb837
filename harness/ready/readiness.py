"""Wait until a planned testbed is truly ready, layer by layer, and say how long each layer took.

1. containers: every planned container exists and runs. One that exits, or that its compose
   healthcheck calls unhealthy, fails the wait at once (here and in the app layer), with its
   last log lines.
2. app probe: from the host, `GET /debug/info` answers with a peer id and an `spr:` record
   (status peers: `POST /health`). This is the compose healthcheck's own probe, polled from the
   host: docker runs the healthcheck only every few seconds (each run is a process started in
   the container), so readiness does not wait for docker to call a container healthy.
3. topology predicate: every node announces the address the plan gave it, and peer ids are
   distinct; behind NATs, the referee classifies every router and it must match its profile.
4. peering: the testbed connects the planned pairs (`GET /connect/{peer}?addrs=...`, the pattern
   upstream's own tests use) and waits until every node lists all its planned peers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import docker
import requests
from docker.models.containers import Container

from harness.clients.codex import (
    CodexApiError,
    CodexClient,
    announced_addresses,
    circuit_addresses,
    dialable_addresses,
)
from harness.clients.metrics import scrape
from harness.errors import ContainerFailed, NatMismatch
from harness.impl import CONNECTIONS, PEERS_GAUGE
from harness.labels import find_containers
from harness.net import natcheck
from harness.ready.waits import Deadline, NotYet, wait_until
from harness.topology.plan import NodePlan, Plan

LOG_TAIL = 30
T = TypeVar("T")
APP_PROBE_INTERVAL_S = 0.25


@dataclass
class Step:
    layer: str
    target: str
    seconds: float
    detail: str = ""


@dataclass
class ReadinessReport:
    project: str
    steps: list[Step] = field(default_factory=list)
    total_s: float = 0.0
    nat: list[dict] = field(default_factory=list)  # the referee's verdicts, one per router

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_text(self) -> str:
        lines = [f"readiness of {self.project}: {self.total_s:.1f}s"]
        lines += [f"  {s.layer:<10} {s.target:<14} {s.seconds:6.2f}s  {s.detail}" for s in self.steps]
        return "\n".join(lines)


def log_tail(container: Container, lines: int = LOG_TAIL) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace").rstrip()
    except docker.errors.APIError as exc:
        text = f"(logs unavailable: {exc})"
    return f"--- last {lines} log lines of {container.name} ---\n{text}"


def _container_state(container: Container) -> tuple[str, str]:
    """(status, health) as docker sees it now; health is "none" without a healthcheck."""
    container.reload()
    state = container.attrs["State"]
    return state["Status"], (state.get("Health") or {}).get("Status", "none")


def raise_if_down(name: str, container: Container) -> str:
    """The container's status; ContainerFailed (with its logs) if it exited or is unhealthy."""
    status, health = _container_state(container)
    if status in ("exited", "dead") or health == "unhealthy":
        raise ContainerFailed(f"{name} is {status}/{health} during readiness\n{log_tail(container)}")
    return status


def wait_containers_running(
    client: docker.DockerClient, plan: Plan, deadline: Deadline, report: ReadinessReport
) -> dict[str, Container]:
    start = time.monotonic()
    pending = set(plan.containers)
    containers: dict[str, Container] = {}

    def probe() -> bool:
        containers.update(find_containers(client, plan.project))
        for name in sorted(pending):
            if name in containers and raise_if_down(name, containers[name]) == "running":
                pending.discard(name)
                report.steps.append(Step("container", name, time.monotonic() - start, "running"))
        if pending:
            raise NotYet("not running yet: " + ", ".join(sorted(pending)))
        return True

    def culprit() -> str:
        return "\n".join(log_tail(containers[n]) for n in sorted(pending) if n in containers)

    wait_until("containers to run", probe, deadline.remaining(), culprit=culprit)
    return containers


def _wait_app(name: str, what: str, container: Container, answer: Callable[[], T], deadline: Deadline) -> T:
    """Poll one service's app probe from the host; its container exiting fails the wait at once."""

    def probe() -> T:
        raise_if_down(name, container)
        return answer()

    return wait_until(
        f"{name} to answer {what}",
        probe,
        deadline.remaining(),
        interval_s=APP_PROBE_INTERVAL_S,
        culprit=lambda: log_tail(container),
    )


def wait_app_probes(
    plan: Plan, containers: dict[str, Container], deadline: Deadline, report: ReadinessReport
) -> dict[str, dict]:
    infos: dict[str, dict] = {}
    for name, node in plan.nodes.items():
        start = time.monotonic()
        client = CodexClient(node.api_url, timeout_s=5)

        def answer(client: CodexClient = client) -> dict:
            try:
                info = client.debug_info()
            except (requests.RequestException, CodexApiError, ValueError) as exc:
                raise NotYet(f"{exc.__class__.__name__}: {exc}") from None
            if not info.get("id") or not str(info.get("spr", "")).startswith("spr:"):
                raise NotYet(f"debug/info without id/spr: {str(info)[:200]}")
            return info

        what = f"GET {node.api_url}/debug/info"
        infos[name] = _wait_app(name, what, containers[name], answer, deadline)
        report.steps.append(Step("app", name, time.monotonic() - start, infos[name]["id"]))
    return infos


def wait_status_peers(
    plan: Plan, containers: dict[str, Container], deadline: Deadline, report: ReadinessReport
) -> None:
    """Every status peer answers POST /health (status-backend's readiness probe)."""
    for name, peer in plan.status.items():
        start = time.monotonic()

        def answer(url: str = f"{peer.url}/health") -> dict:
            try:
                response = requests.post(url, timeout=5)
                response.raise_for_status()
                return response.json()
            except (requests.RequestException, ValueError) as exc:
                raise NotYet(f"{exc.__class__.__name__}: {exc}") from None

        version = _wait_app(name, f"POST {peer.url}/health", containers[name], answer, deadline)
        report.steps.append(Step("app", name, time.monotonic() - start, str(version.get("version"))))


def wait_relay_reservations(plan: Plan, deadline: Deadline, report: ReadinessReport) -> None:
    """Every node given a relay holds a reservation on it: a `/p2p-circuit` address in its
    `/debug/info` (how upstream's own NAT tests tell; the reference node lists it the same way)."""
    for name, node in plan.nodes.items():
        if not node.relay:
            continue
        start = time.monotonic()
        client = CodexClient(node.api_url, timeout_s=5)

        def reserved(client: CodexClient = client) -> list[str]:
            info = client.debug_info()
            if not (circuits := circuit_addresses(info)):
                relay = info.get("relay") or {}  # the reference node says why, when it can
                raise NotYet(f"no /p2p-circuit address yet: {relay.get('error') or 'starting'}")
            return circuits

        circuits = wait_until(f"{name} to reserve a slot on its relay", reserved, deadline.remaining())
        report.steps.append(Step("relay", name, time.monotonic() - start, circuits[0]))


def check_topology(plan: Plan, infos: dict[str, dict], report: ReadinessReport) -> None:
    start = time.monotonic()
    problems = []
    for name, node in plan.nodes.items():
        announced = " ".join(announced_addresses(infos[name]))
        if f"/ip4/{node.announce_ip}/" not in announced:
            problems.append(f"{name} announces {announced or 'nothing'}, expected {node.announce_ip}")
    ids = [info["id"] for info in infos.values()]
    if len(set(ids)) != len(ids):
        problems.append(f"peer ids are not distinct: {ids}")
    if problems:
        raise ContainerFailed("topology predicate failed: " + "; ".join(problems))
    report.steps.append(
        Step("topology", plan.topology, time.monotonic() - start, f"{len(ids)} nodes announce")
    )


def check_nats(
    plan: Plan, containers: dict[str, Container], deadline: Deadline, report: ReadinessReport
) -> None:
    start = time.monotonic()
    verdicts = natcheck.check_all(plan, containers, deadline.remaining())
    report.nat = json.loads(natcheck.to_json(verdicts))
    for verdict in verdicts:
        detail = f"{verdict.declared}: {verdict.mapping} / {verdict.filtering}"
        report.steps.append(Step("nat", verdict.lan, time.monotonic() - start, detail))
    if not all(v.agrees for v in verdicts):
        raise NatMismatch("a router does not behave as declared:\n" + natcheck.to_markdown(verdicts))


def missing_peers(node: NodePlan, expected: set[str]) -> str | None:
    """Why `node` does not count as connected to the peer ids `expected` yet, read from its
    profile's public signal (None when it does): Logos-era nodes list their connections in
    `/debug/info`; Codex-era nodes list none anywhere, but nim-libp2p's `libp2p_peers` gauge
    counts them (the dials themselves were answered 200)."""
    if node.profile.peering == CONNECTIONS:
        seen = {
            c.get("peerId")
            for c in CodexClient(node.api_url, timeout_s=5).debug_info().get("connections") or []
        }
        lacking = expected - seen
        return f"/debug/info connections lack {len(lacking)} of {len(expected)} peers" if lacking else None
    count = scrape(node.metrics_url, timeout_s=5).get(PEERS_GAUGE)
    if count is None:
        return f"/metrics has no {PEERS_GAUGE}"
    return f"{PEERS_GAUGE} is {count:.0f}, {len(expected)} planned" if count < len(expected) else None


def connect_peers(plan: Plan, infos: dict[str, dict], deadline: Deadline, report: ReadinessReport) -> None:
    start = time.monotonic()
    for dialer, target in plan.edges:
        addrs = dialable_addresses(infos[target])
        client = CodexClient(plan.nodes[dialer].api_url, timeout_s=15)

        def dial(client: CodexClient = client, target: str = target, addrs: list[str] = addrs) -> bool:
            try:
                client.connect(infos[target]["id"], addrs)
            except (requests.RequestException, CodexApiError) as exc:
                raise NotYet(str(exc)) from None
            return True

        wait_until(f"{dialer} to connect to {target} at {addrs}", dial, deadline.remaining())

    expected = {name: {infos[p]["id"] for p in node.peers} for name, node in plan.nodes.items()}

    def all_peered() -> bool:
        missing = []
        for name, node in plan.nodes.items():
            try:
                why = missing_peers(node, expected[name]) if expected[name] else None
            except (requests.RequestException, CodexApiError, ValueError) as exc:
                why = f"{exc.__class__.__name__}: {exc}"
            if why:
                missing.append(f"{name}: {why}")
        if missing:
            raise NotYet("; ".join(missing))
        return True

    wait_until("every node to see its planned peers", all_peered, deadline.remaining())
    report.steps.append(
        Step("peering", plan.topology, time.monotonic() - start, f"{len(plan.edges)} connections")
    )


def wait_ready(plan: Plan, deadline_s: float = 180, report: ReadinessReport | None = None) -> ReadinessReport:
    """Fills `report` as it goes, so a caller keeps the partial report when a layer fails."""
    report = report if report is not None else ReadinessReport(plan.project)
    deadline = Deadline(deadline_s)
    client = docker.from_env()
    containers = wait_containers_running(client, plan, deadline, report)
    infos = wait_app_probes(plan, containers, deadline, report)
    check_topology(plan, infos, report)
    check_nats(plan, containers, deadline, report)
    connect_peers(plan, infos, deadline, report)
    wait_relay_reservations(plan, deadline, report)
    wait_status_peers(plan, containers, deadline, report)
    report.total_s = time.monotonic() - deadline.start
    return report
