"""Run a scenario: bring its topology up, play its timeline, watch the nodes, judge, keep evidence.

One run is one fresh testbed of the scenario's topology (its links and router settings applied,
its seed set), so runs never share state. While the steps play, a sampler thread watches every
storage node through the public contract and its kernel — whether it holds a reservation (it
announces a relayed address while its kernel holds a TCP connection to its relay), and, for the
pairs the expectations name, whether their TCP connection is direct (a connection to where the
WAN sees the peer) — and records what it saw on the timeline, which the verdicts read.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.clients.codex import CodexApiError, CodexClient, circuit_addresses, dialable_addresses
from harness.clients.metrics import scrape
from harness.net import sockets
from harness.selection import BuildUnderTest
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until

from . import bundle, verdict
from .faults import FAULTS, FaultContext
from .scenario import Scenario, Step
from .timeline import Timeline

SAMPLE_INTERVAL_S = 2.0
CHUNK = 1 << 16  # small: `bytes` of a failed download says how far it got


@dataclass
class Run:
    """One run's outcome: its verdicts, its timeline, and the bundle that holds the evidence."""

    seed: int
    project: str  # the testbed it ran on (gone when the run returns)
    verdicts: list[verdict.Verdict]
    timeline: Timeline
    bundle: Path


class Player:
    """Plays one scenario's steps on one testbed."""

    def __init__(self, scenario: Scenario, testbed: Testbed, timeline: Timeline, evidence: Path, seed: int):
        self.scenario, self.testbed, self.timeline = scenario, testbed, timeline
        self.faults = FaultContext(testbed, timeline, evidence)
        self.rng = random.Random(seed)
        self.datasets: dict[str, tuple[str, int]] = {}  # name -> (cid, bytes)
        self.downloads: dict[str, threading.Thread] = {}
        self.watched = watched_pairs(scenario)
        # the sampler's own clients (a requests session is not shared between threads)
        self.sampling = {name: CodexClient(node.api_url, 3) for name, node in testbed.plan.nodes.items()}

    # -- workload ---------------------------------------------------------------------------------
    def upload(self, node: str, size: int, as_: str) -> None:
        start = time.monotonic()
        cid = self.testbed.client(node).upload(self.rng.randbytes(size))  # the seed decides the bytes
        self.datasets[as_] = (cid, size)
        self.timeline.record(
            "upload", as_, node=node, bytes=size, cid=cid, seconds=round(time.monotonic() - start, 2)
        )

    def download(self, node: str, dataset: str, id: str, background: bool, timeout_s: float) -> None:
        thread = threading.Thread(target=self._fetch, args=(node, dataset, id, timeout_s), daemon=True)
        self.timeline.record("download", id, node=node, dataset=dataset, phase="begin")
        thread.start()
        self.downloads[id] = thread
        if not background:
            thread.join()

    def _fetch(self, node: str, dataset: str, id: str, timeout_s: float) -> None:
        (cid, expected), start, received, error = self.datasets[dataset], time.monotonic(), 0, None
        try:
            client = CodexClient(self.testbed.plan.nodes[node].api_url, timeout_s)  # its own session
            with client.request(
                "GET", f"/data/{cid}/network/stream", stream=True, timeout=timeout_s
            ) as response:
                if response.status_code != 200:
                    raise CodexApiError("GET", response.url, response.status_code, response.text[:300])
                for part in response.iter_content(CHUNK):
                    received += len(part)
                    if time.monotonic() - start > timeout_s:
                        raise TimeoutError(f"not whole after {timeout_s:.0f} s")
        except Exception as exc:  # the failure is the observation: record it, don't raise
            error = f"{type(exc).__name__}: {exc}"[:300]
        if error is None and received != expected:
            error = f"stream ended after {received} of {expected} bytes"
        self.timeline.record(
            "download", id, node=node, dataset=dataset, phase="end", ok=error is None, error=error,
            bytes=received, seconds=round(time.monotonic() - start, 2),
        )  # fmt: skip

    def await_(self, download: str) -> None:
        self.downloads[download].join()

    def connect(self, node: str, peer: str) -> None:
        """Dial the peer's announced addresses, then (behind a NAT they fail) its relayed ones."""
        info = self.testbed.client(peer).debug_info()
        client = self.testbed.client(node)
        if dialable_addresses(info):
            try:
                client.connect(info["id"], dialable_addresses(info))
                return
            except CodexApiError as exc:
                self.timeline.record("note", node, text=f"direct dial of {peer} failed: {exc.status}")
        client.connect(info["id"], circuit_addresses(info))

    def wait_direct(self, node: str, peer: str, timeout_s: float) -> None:
        def direct() -> bool:
            if peer in self.direct_peers(node):
                return True
            raise NotYet(f"{node} has no direct connection to {peer}")

        wait_until(f"a direct connection {node} -> {peer}", direct, timeout_s, interval_s=1.0)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # the scenario's own time passing, not a readiness wait

    # -- observation --------------------------------------------------------------------------------
    def peers_of(self, node: str) -> set[str]:
        """The peers whose connection to `node` a step or an expectation asks about."""
        return {peer for a, b in self.watched for n, peer in ((a, b), (b, a)) if n == node}

    def remote_ips(self, node: str) -> set[str]:
        """Where `node`'s TCP connections go, as its kernel sees them."""
        project = self.testbed.plan.project
        return {c.remote_ip for c in sockets.established(self.testbed.container(node), project)}

    def direct_peers(self, node: str, remote: set[str] | None = None) -> list[str]:
        """The watched peers `node` holds a TCP connection to, at the address the WAN sees them."""
        peers = self.peers_of(node)
        if not peers:
            return []
        remote = self.remote_ips(node) if remote is None else remote
        return sorted(peer for peer in peers if self.testbed.plan.seen_as(peer) in remote)

    def sample(self) -> None:
        """What every node shows now, on the timeline; its metrics into the metrics series.

        A node holds its reservation when it announces a relayed address *and* its kernel holds
        a TCP connection to its relay: an announcement alone can outlive the reservation (a
        node that does not withdraw it when its relay goes), and both are the public contract."""
        series: dict = {"t_s": round(self.timeline.elapsed(), 2)}
        plan = self.testbed.plan
        for node, planned in plan.nodes.items():
            announced: bool | None = None
            remote: set[str] | None = None
            with contextlib.suppress(Exception):  # a killed or paused node is "unknown", not a crash
                announced = bool(circuit_addresses(self.sampling[node].debug_info(timeout_s=3)))
            with contextlib.suppress(Exception):
                series[node] = scrape(planned.metrics_url, timeout_s=3)
            if planned.relay or self.peers_of(node):
                with contextlib.suppress(Exception):
                    remote = self.remote_ips(node)
            detail: dict = {"reserved": None}
            if planned.relay is not None and announced is not None and remote is not None:
                connected = plan.relays[planned.relay].ip in remote
                detail = {
                    "reserved": announced and connected,
                    "announced": announced,
                    "relay_connected": connected,
                }
            direct = self.direct_peers(node, remote) if remote is not None else []
            self.timeline.record("sample", node, **detail, direct_peers=direct)
        with (self.faults.evidence / "metrics.jsonl").open("a") as out:
            out.write(json.dumps(series) + "\n")

    # -- the timeline -----------------------------------------------------------------------------
    def play(self) -> None:
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_until, args=(stop,), daemon=True)
        sampler.start()
        previous_end = 0.0
        try:
            for step in self.scenario.steps:
                if step.at is not None:
                    time.sleep(max(0.0, step.at - self.timeline.elapsed()))
                if step.after is not None:
                    time.sleep(max(0.0, previous_end + step.after - self.timeline.elapsed()))
                self.timeline.record("step", step.name, index=step.index, action=step.action, phase="begin")
                self.run_step(step)
                self.timeline.record("step", step.name, index=step.index, action=step.action, phase="end")
                previous_end = self.timeline.elapsed()
            for thread in [*self.downloads.values(), *self.faults.background]:
                thread.join()
        finally:
            stop.set()
            sampler.join(timeout=30)
            self.sample()  # the state at the end, too

    def _sample_until(self, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def run_step(self, step: Step) -> None:
        args = dict(step.args)
        workload: dict[str, Callable[..., None]] = {
            "upload": lambda: self.upload(args["node"], args["size"], args["as"]),
            "download": lambda: self.download(
                args["node"], args["dataset"], args["id"], args["background"], args["timeout_s"]
            ),
            "await": lambda: self.await_(args["download"]),
            "connect": lambda: self.connect(args["node"], args["peer"]),
            "wait_direct": lambda: self.wait_direct(args["node"], args["peer"], args["timeout_s"]),
            "wait": lambda: self.wait(args["seconds"]),
        }
        if step.action in workload:
            workload[step.action]()
        else:
            FAULTS[step.action](self.faults, **args)


def watched_pairs(scenario: Scenario) -> set[tuple[str, str]]:
    """The node pairs whose connection the expectations and steps ask about."""
    pairs = {(e.args["node"], e.args["peer"]) for e in scenario.expect if "peer" in e.args}
    pairs |= {(s.args["node"], s.args["peer"]) for s in scenario.steps if s.action == "wait_direct"}
    return pairs


def run_once(
    scenario: Scenario,
    seed: int,
    build: BuildUnderTest | None,
    out: Path,
    echo: Callable[[str], None] = print,
    deadline_s: float = 300,
) -> Run:
    """One run: up, play, judge, evidence, down. The bundle is written whatever happens."""
    scenario = scenario.with_seed(seed)
    timeline = Timeline(echo=ChangesOnly(echo))
    folder = out / f"{scenario.name}-seed{seed}-{os.getpid()}-{int(time.time())}"
    evidence = folder / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    with Testbed.up(
        scenario.topology, deadline_s=deadline_s, build=build, log=lambda line: echo(f"  {line}")
    ) as testbed:
        timeline.start()
        player = Player(scenario, testbed, timeline, evidence, seed)
        try:
            player.play()
        except Exception as exc:  # a step that cannot run ends the run; the verdicts say what was seen
            timeline.record("note", "runner", text=f"the timeline stopped: {type(exc).__name__}: {exc}")
        finally:
            testbed.save_artifacts(evidence / "testbed")
            metrics = {node: _safe_metrics(testbed, node) for node in testbed.plan.nodes}
            (evidence / "metrics-at-end.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    verdicts = verdict.judge(scenario.expect, timeline.events)
    (evidence / "timeline.json").write_text(timeline.to_json())
    (evidence / "verdicts.txt").write_text(verdict.format_verdicts([verdicts]))
    with contextlib.suppress(ImportError):  # the plot needs the load extra (matplotlib)
        bundle.plot_timeline(timeline.events, evidence / "timeline.png")
    archive = bundle.write_bundle(folder.with_suffix(".tar.gz"), scenario.source, {"evidence": evidence})
    return Run(seed, testbed.plan.project, verdicts, timeline, archive)


class ChangesOnly:
    """Echo every event but a sample that says what the node's last sample said (every 2 s)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last: dict[str, str] = {}

    def __call__(self, line: str) -> None:
        fields = line.split(maxsplit=4)  # t, "s", kind, subject, rest
        if len(fields) >= 4 and fields[2] == "sample":
            state = fields[4] if len(fields) > 4 else ""
            if self.last.get(fields[3]) == state:
                return
            self.last[fields[3]] = state
        self.echo(line)


def _safe_metrics(testbed: Testbed, node: str) -> dict[str, float]:
    try:
        return testbed.metrics(node)
    except Exception:
        return {}
