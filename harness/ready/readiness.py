"""Wait until a planned testbed is truly ready, condition kind by kind, and say how long each took.

What ready means for a service is data: the `ready` conditions its ServiceSpec declares
(harness/render/conditions.py, given by harness/render/services.py). `WAITS` evaluates them one
kind at a time, every service's conditions of that kind together, in this order, under one
Deadline:

1. Running: every planned container exists and runs. One that exits, or that its compose
   healthcheck calls unhealthy, fails the wait at once (here and in the app probes), with its
   last log lines.
2. AnswersDebugInfo: from the host, `GET /debug/info` answers with a peer id and an `spr:`
   record. This is the compose healthcheck's own probe, polled from the host: docker runs the
   healthcheck only every few seconds (each run is a process started in the container), so
   readiness does not wait for docker to call a container healthy.
   The host reaches every service on its own subnet, so these two need no routes: `Testbed.up`
   sets routes and shaping (plumbing) meanwhile, and the kinds below wait for it to finish.
3. Announces: every node announces the address the plan gave it (a node left to find its own
   by AutoNAT is given none), and peer ids are distinct.
4. NatAsDeclared: behind NATs, the referee classifies every LAN's router as its profile.
5. PeeredWith: the testbed connects the planned pairs (`GET /connect/{peer}?addrs=...`, the
   pattern upstream's own tests use) and waits until every node shows all its planned peers.
6. CircuitReservation: a node given a relay holds a reservation on it.
7. StatusHealth: every status peer answers `POST /health`.
8. FleetAnswers: the Waku fleet node answers `GET /info` with its peer id and addresses.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

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
from harness.errors import ContainerFailed, NatMismatch, WaitTimeout
from harness.impl import CONNECTIONS, PEERS_GAUGE
from harness.labels import find_containers
from harness.net import natcheck
from harness.parallel import all_of
from harness.render.conditions import (
    Announces,
    AnswersDebugInfo,
    CircuitReservation,
    FleetAnswers,
    NatAsDeclared,
    PeeredWith,
    Running,
    StatusHealth,
)
from harness.render.services import services
from harness.topology.plan import NodePlan, Plan
from harness.waits import Deadline, NotYet, wait_until

LOG_TAIL = 30
T = TypeVar("T")
APP_PROBE_INTERVAL_S = 0.25
# Services probed, or connections dialled, at once: one at a time, a 25-node mesh's 300 dials
# took 77 s of its readiness.
CONCURRENCY = 8


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


@dataclass
class Progress:
    """One readiness run: its plan, deadline and report, and what earlier kinds found that later
    ones read (the containers, each node's `/debug/info`)."""

    plan: Plan
    deadline: Deadline
    report: ReadinessReport
    containers: dict[str, Container] = field(default_factory=dict)
    infos: dict[str, dict] = field(default_factory=dict)

    def step(self, layer: str, target: str, start: float, detail: str = "") -> None:
        self.report.steps.append(Step(layer, target, time.monotonic() - start, detail))


def wait_running(progress: Progress, targets: list[tuple[str, Running]]) -> None:
    start = time.monotonic()
    pending = {name for name, _ in targets}
    client = docker.from_env()

    def probe() -> bool:
        progress.containers.update(find_containers(client, progress.plan.project))
        containers = progress.containers
        for name in sorted(pending):
            if name in containers and raise_if_down(name, containers[name]) == "running":
                pending.discard(name)
                progress.step("container", name, start, "running")
        if pending:
            raise NotYet("not running yet: " + ", ".join(sorted(pending)))
        return True

    def culprit() -> str:
        return "\n".join(
            log_tail(progress.containers[n]) for n in sorted(pending) if n in progress.containers
        )

    wait_until("containers to run", probe, progress.deadline.remaining(), culprit=culprit)


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


def debug_info_answer(client: CodexClient) -> dict:
    """The node's `/debug/info` once it names its id and a signed peer record (AnswersDebugInfo);
    NotYet until then."""
    try:
        info = client.debug_info()
    except (requests.RequestException, CodexApiError, ValueError) as exc:
        raise NotYet(f"{exc.__class__.__name__}: {exc}") from None
    if not info.get("id") or not str(info.get("spr", "")).startswith("spr:"):
        raise NotYet(f"debug/info without id/spr: {str(info)[:200]}")
    return info


def wait_debug_info(progress: Progress, targets: list[tuple[str, AnswersDebugInfo]]) -> None:
    start = time.monotonic()

    def answered(name: str) -> tuple[dict, float]:
        node = progress.plan.nodes[name]
        client = CodexClient(node.api_url, timeout_s=5)
        what = f"GET {node.api_url}/debug/info"
        info = _wait_app(
            name, what, progress.containers[name], partial(debug_info_answer, client), progress.deadline
        )
        return info, time.monotonic()

    answers = all_of([partial(answered, name) for name, _ in targets], CONCURRENCY)
    for (name, _), (info, at) in zip(targets, answers, strict=True):  # reported in the plan's order
        progress.infos[name] = info
        progress.report.steps.append(Step("app", name, at - start, info["id"]))


def check_announced(progress: Progress, targets: list[tuple[str, Announces]]) -> None:
    start = time.monotonic()
    problems = []
    for name, announces in targets:
        announced = " ".join(announced_addresses(progress.infos[name]))
        if announces.ip and f"/ip4/{announces.ip}/" not in announced:
            problems.append(f"{name} announces {announced or 'nothing'}, expected {announces.ip}")
    ids = [progress.infos[name]["id"] for name, _ in targets]
    if len(set(ids)) != len(ids):
        problems.append(f"peer ids are not distinct: {ids}")
    if problems:
        raise ContainerFailed("topology predicate failed: " + "; ".join(problems))
    progress.step("topology", progress.plan.topology, start, f"{len(ids)} nodes announce")


def check_nats(progress: Progress, targets: list[tuple[str, NatAsDeclared]]) -> None:
    start = time.monotonic()
    routers = [progress.plan.routers[name] for name, _ in targets]
    verdicts = natcheck.check_routers(
        progress.plan, routers, progress.containers, progress.deadline.remaining()
    )
    progress.report.nat = json.loads(natcheck.to_json(verdicts))
    for verdict in verdicts:
        progress.step(
            "nat", verdict.lan, start, f"{verdict.declared}: {verdict.mapping} / {verdict.filtering}"
        )
    if not all(v.agrees for v in verdicts):
        raise NatMismatch("a router does not behave as declared:\n" + natcheck.to_markdown(verdicts))


def peering_gap(node: NodePlan, via: str, expected: set[str]) -> tuple[str | None, set[str]]:
    """Why `node` does not count as connected to the peer ids `expected` yet, read from the
    public signal `via` (None when it does), and which of them it lacks when the signal names
    them: Logos-era nodes list their CONNECTIONS in `/debug/info`; Codex-era nodes list none
    anywhere, but nim-libp2p's PEERS_GAUGE counts them (the dials themselves were answered 200)."""
    if via == CONNECTIONS:
        seen = {
            c.get("peerId")
            for c in CodexClient(node.api_url, timeout_s=5).debug_info().get("connections") or []
        }
        lacking = expected - seen
        why = f"/debug/info connections lack {len(lacking)} of {len(expected)} peers" if lacking else None
        return why, lacking
    count = scrape(node.metrics_url, timeout_s=5).get(PEERS_GAUGE)
    if count is None:
        return f"/metrics has no {PEERS_GAUGE}", set()
    short = count < len(expected)
    return (f"{PEERS_GAUGE} is {count:.0f}, {len(expected)} planned" if short else None), set()


def missing_peers(node: NodePlan, via: str, expected: set[str]) -> str | None:
    return peering_gap(node, via, expected)[0]


def _connect(progress: Progress, dialer: str, target: str) -> None:
    infos = progress.infos
    timeout_s = min(15, progress.deadline.remaining())  # a dial does not outlast the deadline
    client = CodexClient(progress.plan.nodes[dialer].api_url, timeout_s=timeout_s)
    client.connect(infos[target]["id"], dialable_addresses(infos[target]))


def _dial(progress: Progress, dialer: str, target: str) -> None:
    def dial() -> bool:
        try:
            _connect(progress, dialer, target)
        except (requests.RequestException, CodexApiError) as exc:
            raise NotYet(str(exc)) from None
        return True

    addrs = dialable_addresses(progress.infos[target])
    wait_until(f"{dialer} to connect to {target} at {addrs}", dial, progress.deadline.remaining())


def _redial(progress: Progress, dialer: str, target: str) -> None:
    """One more dial of a planned connection that a node no longer lists: a loaded node can
    lose one after its dial was answered (100 py-libp2p nodes on two cores time out identify
    and connection upgrades). A dial that fails waits for the next round."""
    with contextlib.suppress(requests.RequestException, CodexApiError):
        _connect(progress, dialer, target)


def wait_peered(progress: Progress, targets: list[tuple[str, PeeredWith]]) -> None:
    """Dial every planned connection, then wait until every node shows its planned peers. Where
    the signal names the peers a node lacks (CONNECTIONS), each round dials those edges again;
    the step's detail counts them. PEERS_GAUGE names none, so Codex-era nodes are only waited on."""
    start = time.monotonic()
    # in the order of the plan's edges (sorted), not node by node
    dials = sorted((name, target) for name, peered in targets for target in peered.dials)
    all_of([partial(_dial, progress, dialer, target) for dialer, target in dials], CONCURRENCY)
    dialled_s = time.monotonic() - start

    ids = {name: info["id"] for name, info in progress.infos.items()}
    expected = {name: {ids[peer] for peer in peered.peers} for name, peered in targets}
    redialled: list[tuple[str, str]] = []

    def gap(name: str, via: str) -> tuple[str | None, set[str]]:
        try:
            why, lacking = peering_gap(progress.plan.nodes[name], via, expected[name])
        except (requests.RequestException, CodexApiError, ValueError) as exc:
            why, lacking = f"{exc.__class__.__name__}: {exc}", set()
        return (f"{name}: {why}" if why else None), lacking

    def all_peered() -> bool:
        answers = all_of([partial(gap, name, peered.via) for name, peered in targets], CONCURRENCY)
        missing = [why for why, _ in answers if why]
        if not missing:
            return True
        lacking = {name: lacks for (name, _), (_, lacks) in zip(targets, answers, strict=True)}
        lost = [
            (dialer, target)
            for dialer, target in dials
            if ids[target] in lacking.get(dialer, ()) or ids[dialer] in lacking.get(target, ())
        ]
        all_of([partial(_redial, progress, dialer, target) for dialer, target in lost], CONCURRENCY)
        redialled.extend(lost)
        raise NotYet("; ".join(missing))

    wait_until("every node to see its planned peers", all_peered, progress.deadline.remaining())
    detail = f"{len(dials)} connections, dialled in {dialled_s:.1f}s"
    if redialled:
        detail += f", {len(set(redialled))} dialled again ({len(redialled)} dials)"
    progress.step("peering", progress.plan.topology, start, detail)


def wait_reservations(progress: Progress, targets: list[tuple[str, CircuitReservation]]) -> None:
    """A `/p2p-circuit` address in `/debug/info` means a reservation (how upstream's own NAT
    tests tell; the reference node lists it the same way)."""
    for name, _ in targets:
        start = time.monotonic()
        client = CodexClient(progress.plan.nodes[name].api_url, timeout_s=5)

        def reserved(client: CodexClient = client) -> list[str]:
            info = client.debug_info()
            if not (circuits := circuit_addresses(info)):
                relay = info.get("relay") or {}  # the reference node says why, when it can
                raise NotYet(f"no /p2p-circuit address yet: {relay.get('error') or 'starting'}")
            return circuits

        circuits = wait_until(
            f"{name} to reserve a slot on its relay", reserved, progress.deadline.remaining()
        )
        progress.step("relay", name, start, circuits[0])


def wait_status_health(progress: Progress, targets: list[tuple[str, StatusHealth]]) -> None:
    for name, _ in targets:
        start = time.monotonic()
        peer = progress.plan.status[name]

        def answer(url: str = f"{peer.url}/health") -> dict:
            try:
                response = requests.post(url, timeout=5)
                response.raise_for_status()
                return response.json()
            except (requests.RequestException, ValueError) as exc:
                raise NotYet(f"{exc.__class__.__name__}: {exc}") from None

        version = _wait_app(
            name, f"POST {peer.url}/health", progress.containers[name], answer, progress.deadline
        )
        progress.step("app", name, start, str(version.get("version")))


def wait_fleet(progress: Progress, targets: list[tuple[str, FleetAnswers]]) -> None:
    for name, _ in targets:
        start = time.monotonic()
        url = progress.plan.waku.info_url  # type: ignore[union-attr]

        def answer(url: str = url) -> dict:
            try:
                response = requests.get(url, timeout=5)
                response.raise_for_status()
                info = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise NotYet(f"{exc.__class__.__name__}: {exc}") from None
            if not info.get("addrs"):
                raise NotYet("no address yet")
            return info

        info = _wait_app(name, f"GET {url}", progress.containers[name], answer, progress.deadline)
        progress.step("app", name, start, info["id"])


# Each kind of condition and its wait, in the order readiness evaluates them. A wait gets every
# service's conditions of its kind, as (service name, condition) in the specs' order, and reads
# what earlier waits found: the app probes need the containers; the rest, /debug/info.
WAITS: tuple[tuple[type, Callable[[Progress, Any], None]], ...] = (
    (Running, wait_running),
    (AnswersDebugInfo, wait_debug_info),
    (Announces, check_announced),
    (NatAsDeclared, check_nats),
    (PeeredWith, wait_peered),
    (CircuitReservation, wait_reservations),
    (StatusHealth, wait_status_health),
    (FleetAnswers, wait_fleet),
)

# The first two kinds: every container runs and every node's API answers (a restarted node, bench).
ANSWERING = (Running, AnswersDebugInfo)
# What a restarted node must show again: its own conditions (peering and the NAT check are about
# the others).
BACK = (*ANSWERING, Announces, CircuitReservation)


def wait_plumbed(progress: Progress, plumbing: Future) -> None:
    """Wait for the plumbing that ran while the nodes booted; its failure is raised here."""
    start = time.monotonic()
    try:
        plumbing.result(timeout=progress.deadline.remaining())
    except FutureTimeout:
        raise WaitTimeout(
            f"timed out after {progress.deadline.seconds:.0f}s (the deadline) waiting for plumbing "
            "(routes, shaping) to finish"
        ) from None
    progress.step("plumbing", progress.plan.topology, start, "routes and shaping set")


def wait_conditions(
    plan: Plan,
    deadline: Deadline,
    report: ReadinessReport,
    kinds: tuple[type, ...] | None = None,
    plumbing: Future | None = None,
) -> None:
    """Wait for the ready conditions the plan's services declare, kind by kind (only `kinds`, if
    given). Every kind's wait runs, with no targets when no service asks for it: a plan without
    edges still reports its (empty) peering step. `plumbing`, running meanwhile, is waited for
    before the first kind that needs routes."""
    progress = Progress(plan, deadline, report)
    specs = services(plan)
    for kind, wait in WAITS:
        if plumbing is not None and kind not in ANSWERING:
            wait_plumbed(progress, plumbing)
            plumbing = None
        if kinds is None or kind in kinds:
            wait(progress, [(spec.name, c) for spec in specs for c in spec.ready if isinstance(c, kind)])


def wait_ready(
    plan: Plan,
    deadline_s: float = 180,
    report: ReadinessReport | None = None,
    plumbing: Future | None = None,
) -> ReadinessReport:
    """Fills `report` as it goes, so a caller keeps the partial report when a layer fails."""
    report = report if report is not None else ReadinessReport(plan.project)
    deadline = Deadline(deadline_s)
    wait_conditions(plan, deadline, report, plumbing=plumbing)
    report.total_s = time.monotonic() - deadline.start
    return report
