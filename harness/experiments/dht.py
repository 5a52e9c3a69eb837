"""What keeping content findable costs: the DHT scaling research's per-node model, measured on the
Logos-era node's Kad-DHT as the network (N), the content per node (C) and the re-advertise
interval (T) grow.

The research (logos-storage-research `analysis/DHT-scaling`, built on discv5 message sizes) puts a
node's DHT traffic at maintenance + advertising, in bytes/s:
maintenance = 6.67 + 48.2 log2 N, advertising = (C/T) (14460 log2 N + 3744), queries negligible.

Per network size, one testbed of N storage nodes on one WAN, joined through one bootstrap node
(each node dials `d000` over REST, as a bootstrap list would have it), then four phases, each
measured as the change of every node's `kad_message_bytes_sent_total` by message type
(nim-libp2p's Kad-DHT counters; the reference node keeps the same ones):
- join: from the first dial until every routing table holds min(N - 1, 10) peers (below 10,
  nim-libp2p re-seeds its table);
- idle: `idle_s` with nothing stored: the maintenance rate (nim-libp2p refreshes its table every
  10 min, so a window shorter than that, counted from the nodes' start, may see none; 0 skips it);
- upload: every node stores C small datasets; until every node has sent ADD_PROVIDER for each
  and no more go out (its first advertisement);
- steady: `steady_rounds` x T with the C datasets stored: every key re-advertised once per T;
  its rate is set beside the one the fitted constants (and the research's) predict.
Upload and steady repeat for each value of C (datasets are added up to it). Then, with a churn
rate, a fifth:
- churn: a node crashes (SIGKILL) every 60 / rate s and comes back at the next crash, joined
  again through `d000` (its identity and data kept, as a member's machine that went offline);
  beyond the rate of the last steady phase, the bytes per crash are what a crash and a rejoin
  cost. A restarted node's counters start from 0: what it had counted is read just before it
  goes down and carried.

"Per node" is the network's messages counted once, on the side that sent them, divided by N:
the research counts the requests a node makes and the replies it receives, which summed over the
network is the same. T is the reference node's `--advertise-interval` (upstream's is fixed: 30 min,
plus nim-libp2p's republish every 10 min), so an image under test gets its steady phase skipped.

`testbed experiment dht` writes results.json, report.md and dht.png under artifacts/experiments/.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import requests
import yaml

from harness.clients.codex import CodexApiError, announced_addresses
from harness.clients.metrics import scrape, scrape_by_label
from harness.errors import TestbedError
from harness.experiments.bx.common import md_table
from harness.parallel import all_of
from harness.paths import artifacts_dir
from harness.selection import BuildUnderTest
from harness.testbed import Testbed
from harness.topology import loader
from harness.topology.model import HEALTHCHECK_RARELY_S, Topology
from harness.waits import NotYet, wait_until

K = 20  # nim-libp2p's replication (bucket size)
HEALTHY_TABLE = 10  # below this many peers nim-libp2p re-seeds its table: the join is done above it
SENT = "kad_message_bytes_sent_total"
RECEIVED = "kad_message_bytes_received_total"
MESSAGES_SENT = "kad_messages_sent_total"
T = TypeVar("T")
DIAL_BATCH = 8  # REST dials to the bootstrap node at once (at 16, 64 nodes' handshakes timed out)
REDIAL_S = 15  # a node whose table is still empty dials d000 again after this long
SCRAPE_DEADLINE_S = 30
SETTLE_S = 2  # an upload phase ends when no ADD_PROVIDER went out between two polls this far apart


def model_maintenance(n: int) -> float:
    """The research's maintenance rate, bytes/s per node."""
    return 6.67 + 48.2 * math.log2(n)


def model_per_key(n: int) -> float:
    """The research's bytes per advertisement of one key (a lookup and K = 16 ADD_PROVIDERs)."""
    return 14460 * math.log2(n) + 3744


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (16, 32, 64, 128)
    datasets: tuple[int, ...] = (5, 20)  # C, cumulative: datasets stored per node
    interval_s: int = 60  # T, the reference node's --advertise-interval
    idle_s: float = 660  # covers nim-libp2p's first table refresh, 10 min after the start
    steady_rounds: int = 2  # the steady phase lasts this many intervals
    dataset_bytes: int = 4096
    phase_deadline_s: float = 600
    seed: int = 1
    churn_per_min: float = 0  # node crashes per minute in the churn phase (0: no churn phase)
    churn_s: float = 300  # how long the churn phase lasts

    def problems(self) -> list[str]:
        problems = [f"--sizes {n}: at least 2 nodes" for n in self.sizes if n < 2]
        problems += [f"--datasets {c}: at least 1" for c in self.datasets if c < 1]
        if list(self.datasets) != sorted(set(self.datasets)):
            problems.append("--datasets: increasing values (datasets are added up to each)")
        if self.interval_s < 1:
            problems.append("--interval: at least 1 s")
        if self.churn_per_min < 0:
            problems.append("--churn: at least 0 crashes per minute")
        elif self.churn_per_min and self.churn_s * self.churn_per_min < 60:
            problems.append("--churn-duration: too short for one crash at --churn's rate")
        return problems


def churn_schedule(settings: Settings, n: int, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds into the churn phase, node) of each crash, one every 60 / rate s. A crashed node
    comes back at the next crash (one node away at a time); the bootstrap node never leaves, and
    no node crashes twice in a row."""
    period = 60 / settings.churn_per_min
    names = [node_name(i) for i in range(1, n)]
    schedule: list[tuple[float, str]] = []
    for k in range(int(settings.churn_s * settings.churn_per_min // 60)):
        previous = schedule[-1][1] if schedule else None
        schedule.append((k * period, rng.choice([name for name in names if name != previous])))
    return schedule


def node_name(index: int) -> str:
    return f"d{index:03d}"


def topology_document(settings: Settings, n: int, build: BuildUnderTest) -> dict:
    """N Logos-era storage nodes on one WAN, not peered: the experiment joins them."""

    def node() -> dict:  # one dict per node: YAML would alias a shared one
        flags = {} if build.image else {"advertise-interval": f"{settings.interval_s}s"}
        return {"kind": "codex", "impl": "logos-storage", **({"flags": flags} if flags else {})}

    return {
        "name": f"dht-{n}",
        "description": f"DHT experiment, {n} nodes (harness/experiments/dht.py)",
        "peering": "none",
        "seed": settings.seed,
        "healthcheck_interval": HEALTHCHECK_RARELY_S,
        "nodes": {node_name(i): node() for i in range(n)},
    }


def topology(settings: Settings, n: int, build: BuildUnderTest) -> Topology:
    return loader.parse(yaml.safe_dump(topology_document(settings, n, build)), Path(f"<experiment dht {n}>"))


def write_topology(settings: Settings, n: int, build: BuildUnderTest, file: Path) -> None:
    """The topology of one size as a file, joined through `d000` (`peers`), for `testbed render
    --target kubernetes`: on a cluster the peering Job joins the nodes as the join phase does.
    Health probes keep their default: a cluster's nodes have CPUs of their own, and a pod's
    readiness probe that first fails would wait an hour for its next run."""
    document = topology_document(settings, n, build)
    del document["healthcheck_interval"]
    document["nodes"] = {
        name: {**node, **({"peers": [node_name(0)]} if name != node_name(0) else {})}
        for name, node in document["nodes"].items()
    }
    header = f"# Written by `testbed experiment dht --write-topology` ({n} nodes).\n"
    file.write_text(header + yaml.safe_dump(document, sort_keys=False))


Counts = dict[str, dict[tuple[str, str], float]]  # node -> (sample, type) -> value


def _scrape(read: Callable[[], T], what: str) -> T:
    """One read of a node's /metrics, retried: a node on a loaded machine may miss one (seen:
    a refused connection, and once `No route to host`, from a node that kept running)."""

    def attempt() -> tuple[T]:  # in a tuple: an empty read (no message counted yet) is an answer
        try:
            return (read(),)
        except requests.RequestException as exc:
            raise NotYet(f"{what}: {exc}") from None

    return wait_until(what, attempt, SCRAPE_DEADLINE_S, 1)[0]


def _read_every_node(testbed: Testbed, read: Callable[[str], T]) -> dict[str, T]:
    """`read(metrics_url)` of every node, in parallel, each retried as `_scrape` does."""
    nodes = list(testbed.plan.nodes)
    reads = [
        lambda n=n: _scrape(lambda: read(testbed.plan.nodes[n].metrics_url), f"{n}'s /metrics") for n in nodes
    ]
    return dict(zip(nodes, all_of(reads), strict=True))


def counts_at(metrics_url: str) -> dict[tuple[str, str], float]:
    """One node's Kad-DHT counters, by message type."""
    return scrape_by_label(metrics_url, {SENT, RECEIVED, MESSAGES_SENT}, "type")


def read_counts(testbed: Testbed) -> Counts:
    return _read_every_node(testbed, counts_at)


def add_counts(a: Counts, b: Counts) -> Counts:
    """Counts of both, per node and sample (a counter that restarted from 0 is carried so)."""
    total = {node: dict(values) for node, values in a.items()}
    for node, values in b.items():
        for key, value in values.items():
            total.setdefault(node, {})[key] = total.get(node, {}).get(key, 0.0) + value
    return total


def delta(before: Counts, after: Counts, sample: str) -> dict[str, float]:
    """Network total of one sample's change, by message type."""
    by_type: dict[str, float] = {}
    for node, values in after.items():
        for (name, kind), value in values.items():
            if name == sample:
                by_type[kind] = by_type.get(kind, 0.0) + value - before.get(node, {}).get((name, kind), 0.0)
    return by_type


def table_sizes(testbed: Testbed) -> dict[str, float]:
    """kad_routing_table_peers of every node (an unlabelled gauge)."""
    samples = _read_every_node(testbed, scrape)
    return {node: values.get("kad_routing_table_peers", 0.0) for node, values in samples.items()}


class Measurement:
    """One testbed's phases; each is recorded as bytes by message type (sent, network total)."""

    def __init__(self, testbed: Testbed, settings: Settings, echo: Callable[[str], None]) -> None:
        self.testbed, self.settings, self.echo = testbed, settings, echo
        self.n = len(testbed.plan.nodes)
        self.phases: list[dict] = []
        self.rng = random.Random(settings.seed)
        self.bootstrap: tuple[str, list[str]] = ("", [])  # d000's peer id and addresses, once joined

    def phase(self, name: str, action: Callable[[], Counts | None], **facts) -> dict:
        """`action` may return counts its restarts reset (what each node had counted before it
        went down): they are added to the phase's end."""
        before, start = read_counts(self.testbed), time.monotonic()
        lost = action() or {}
        after, seconds = add_counts(read_counts(self.testbed), lost), time.monotonic() - start
        sent, received = delta(before, after, SENT), delta(before, after, RECEIVED)
        record = {
            "phase": name,
            "seconds": round(seconds, 1),
            "sent_by_type": sent,
            "received_by_type": received,
            "bytes_per_node": sum(sent.values()) / self.n,
            "rate_per_node": sum(sent.values()) / self.n / seconds,
            "messages_by_type": delta(before, after, MESSAGES_SENT),
            **facts,
        }
        self.phases.append(record)
        self.echo(
            f"  {name}: {seconds:.0f} s, {record['bytes_per_node']:.0f} B/node "
            f"({record['rate_per_node']:.1f} B/s/node)"
        )
        return record

    def join(self) -> None:
        clients = {name: self.testbed.client(name) for name in self.testbed.plan.nodes}
        bootstrap = clients[node_name(0)].debug_info()
        self.bootstrap = peer_id, addrs = bootstrap["id"], announced_addresses(bootstrap)
        target = min(self.n - 1, HEALTHY_TABLE)

        redials = [0]

        def dial(name: str) -> None:
            """One node dials d000, as its bootstrap list would have it; a dial that fails (a
            handshake that timed out on a loaded machine) is tried again by the wait below."""
            try:
                clients[name].connect(peer_id, addrs)
            except (requests.RequestException, CodexApiError) as exc:
                self.echo(f"    {name} could not dial d000 ({exc.__class__.__name__}); it will again")

        def dial_all() -> None:
            names = [name for name in clients if name != node_name(0)]
            all_of([lambda n=n: dial(n) for n in names], DIAL_BATCH)
            last_redial = [time.monotonic()]

            def filled() -> bool:
                sizes = table_sizes(self.testbed)
                short = {n: s for n, s in sizes.items() if s < target}
                if not short:
                    return True
                # A node whose table is still empty never got through to d000. Upstream's node
                # re-seeds from its bootstrap nodes every minute; the experiment stands in for
                # that list, so it dials d000 again for those, at most every REDIAL_S.
                empty = [n for n, size in sizes.items() if size == 0 and n != node_name(0)]
                if empty and time.monotonic() - last_redial[0] >= REDIAL_S:
                    last_redial[0] = time.monotonic()
                    redials[0] += len(empty)
                    all_of([lambda n=n: dial(n) for n in empty], DIAL_BATCH)
                worst = min(short, key=short.__getitem__)
                raise NotYet(
                    f"{len(short)} routing tables below {target} peers ({worst}: {short[worst]:.0f})"
                )

            wait_until(
                f"every routing table to hold {target} peers", filled, self.settings.phase_deadline_s, 1
            )

        record = self.phase("join", dial_all, table_target=target)
        record["redials"] = redials[0]
        if redials[0]:
            self.echo(f"    {redials[0]} dials of d000 made again (nodes whose table stayed empty)")

    def idle(self) -> dict:
        return self.phase("idle", lambda: time.sleep(self.settings.idle_s))

    def upload(self, count: int, total: int) -> None:
        """`count` more datasets on every node; until each has sent an ADD_PROVIDER for every key
        it holds (the first advertisement of the new ones)."""
        names = list(self.testbed.plan.nodes)
        sends_before = {
            n: c.get((MESSAGES_SENT, "addProvider"), 0.0) for n, c in read_counts(self.testbed).items()
        }
        per_node = min(self.n - 1, K)

        def store_and_advertise() -> None:
            blobs = {
                n: [self.rng.randbytes(self.settings.dataset_bytes) for _ in range(count)] for n in names
            }
            all_of([lambda n=n: [self.testbed.client(n).upload(b) for b in blobs[n]] for n in names])

            previous_total = [-1.0]

            def advertised() -> bool:
                """Every node sent an ADD_PROVIDER per new key, and the network's ADD_PROVIDERs
                stopped growing between two polls (a key goes to up to k peers)."""
                counts = read_counts(self.testbed)
                sent = {
                    n: counts[n].get((MESSAGES_SENT, "addProvider"), 0.0) - sends_before[n] for n in names
                }
                if behind := [n for n in names if sent[n] < count]:
                    raise NotYet(f"{len(behind)} nodes have not advertised all {count} new datasets")
                total = sum(sent.values())
                if total != previous_total[0]:
                    previous_total[0] = total
                    raise NotYet(f"ADD_PROVIDERs still going out ({total:.0f} so far)")
                return True

            wait_until(
                f"every node to advertise {count} datasets",
                advertised,
                self.settings.phase_deadline_s,
                SETTLE_S,
            )

        record = self.phase(f"upload C={total}", store_and_advertise, datasets=total, new_keys=count)
        keys = self.n * count
        record["first_bytes_per_key"] = sum(record["sent_by_type"].values()) / keys
        record["add_provider_per_key"] = record["messages_by_type"].get("addProvider", 0.0) / keys
        self.echo(
            f"    {record['first_bytes_per_key']:.0f} B per advertised key; "
            f"{record['add_provider_per_key']:.1f} ADD_PROVIDERs each (up to {per_node})"
        )

    def steady(self, total: int, idle_rate: float) -> None:
        """`steady_rounds` intervals: every key re-advertised once per interval. The rate checks
        the model's; the bytes beyond the average maintenance, over C x rounds, are recorded as a
        second estimate of one key's advertisement (see _per_key)."""
        rounds = self.settings.steady_rounds
        interval = self.settings.interval_s
        record = self.phase(
            f"steady C={total}", lambda: time.sleep(rounds * interval), datasets=total, interval_s=interval
        )
        advertising = record["bytes_per_node"] - idle_rate * record["seconds"]
        record["bytes_per_key"] = advertising / (total * rounds)
        self.echo(f"    {record['bytes_per_key']:.0f} B per key and round, beyond the average maintenance")

    def churn(self, baseline_rate: float) -> None:
        """Crashes (SIGKILL) at `churn_per_min`, each node back at the next crash and joined again
        through d000, as the join phase joined it. Beyond the rate of the phase before
        (`baseline_rate`), the bytes are what the crashes and rejoins cost."""
        schedule = churn_schedule(self.settings, self.n, self.rng)
        period = 60 / self.settings.churn_per_min

        def crash_and_rejoin() -> Counts:
            lost: Counts = {}
            start, away = time.monotonic(), None
            for at, node in [*schedule, (len(schedule) * period, None)]:
                time.sleep(max(0.0, start + at - time.monotonic()))  # the schedule's next crash
                if away:
                    self.testbed.start(away, self.settings.phase_deadline_s)
                    self.testbed.client(away).connect(*self.bootstrap)
                if node:  # what it counted so far: its counters restart from 0
                    url = self.testbed.plan.nodes[node].metrics_url
                    counts = _scrape(partial(counts_at, url), f"{node}'s /metrics")
                    lost = add_counts(lost, {node: counts})
                    self.testbed.kill(node)
                away = node
            return lost

        events = len(schedule)
        record = self.phase("churn", crash_and_rejoin, crashes=events, per_min=self.settings.churn_per_min)
        beyond = record["bytes_per_node"] * self.n - baseline_rate * self.n * record["seconds"]
        record["bytes_per_crash"] = beyond / events
        self.echo(f"    {record['bytes_per_crash']:.0f} B per crash and rejoin (network total)")


def measure(testbed: Testbed, settings: Settings, reference: bool, echo: Callable[[str], None]) -> list[dict]:
    run = Measurement(testbed, settings, echo)
    run.join()
    idle_rate = run.idle()["rate_per_node"] if settings.idle_s > 0 else 0.0
    stored = 0
    for total in settings.datasets:
        run.upload(total - stored, total)
        stored = total
        if reference:
            run.steady(total, idle_rate)
    if settings.churn_per_min:
        steady = [p for p in run.phases if p["phase"].startswith("steady")]
        run.churn(steady[-1]["rate_per_node"] if steady else idle_rate)
    return run.phases


def run(
    settings: Settings, build: BuildUnderTest, echo: Callable[[str], None] = print, out: Path | None = None
) -> Path:
    if problems := settings.problems():
        raise TestbedError("; ".join(problems))
    if build.impl not in (None, "logos-storage"):
        raise TestbedError(f"--impl {build.impl}: the DHT experiment needs the Logos era (Kad-DHT)")
    folder = out or artifacts_dir("experiments") / f"dht-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    reference = build.image is None
    summary: dict = {"settings": asdict(settings), "build": asdict(build), "sizes": {}}
    for n in settings.sizes:
        echo(f"N={n}: bringing up {n} nodes")
        start = time.monotonic()
        with Testbed.up(topology(settings, n, build), log=lambda _: None, build=build) as testbed:
            ready_s = time.monotonic() - start
            echo(f"  up and ready in {ready_s:.0f} s")
            try:
                phases = measure(testbed, settings, reference, echo)
            except BaseException:  # why a node went away, or what stopped the run
                echo(f"  stopped; the nodes' logs: {testbed.save_artifacts(folder / f'testbed-{n}')}")
                raise
        summary["sizes"][str(n)] = {"ready_s": round(ready_s, 1), "phases": phases}
        write_results(summary, folder)  # after every size: a later size that fails keeps these
    return folder


def merge_runs(folders: list[Path], out: Path | None = None) -> Path:
    """One report of several runs' results.json (`testbed experiment dht --merge`)."""
    missing = [str(f) for f in folders if not (f / "results.json").is_file()]
    if missing:
        raise TestbedError(f"--merge: no results.json in {', '.join(missing)}")
    summary = merge([json.loads((f / "results.json").read_text()) for f in folders])
    summary["merged_from"] = [str(f) for f in folders]
    folder = out or artifacts_dir("experiments") / f"dht-merged-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    write_results(summary, folder)
    return folder


def write_results(summary: dict, folder: Path) -> None:
    summary["fit"] = fit(summary)
    (folder / "results.json").write_text(json.dumps(summary, indent=2))
    (folder / "report.md").write_text(markdown(summary))
    plot(summary, folder / "dht.png")


def _phase(size: dict, name: str) -> dict | None:
    return next((p for p in size["phases"] if p["phase"] == name), None)


def _per_key(n: int, size: dict) -> list[float]:
    """One key's advertisement, bytes: the uploads' first advertisements. Their windows last
    seconds, which nim-libp2p's 10-minute refresh rarely falls in, while a steady window shorter
    than 10 minutes holds a whole refresh or none, so subtracting the average maintenance from it
    is only right on average. An upload a re-advertisement sweep overlapped (more ADD_PROVIDERs
    per key than a key goes to) is left out; the steady phases' values stand in if none is left."""
    replicas = min(n - 1, K)
    clean = [
        p["first_bytes_per_key"]
        for p in size["phases"]
        if "first_bytes_per_key" in p and p["add_provider_per_key"] <= replicas + 0.5
    ]
    return clean or [p["bytes_per_key"] for p in size["phases"] if "bytes_per_key" in p]


def _idle_rate(size: dict) -> float | None:
    idle = _phase(size, "idle")
    return idle["rate_per_node"] if idle else None


def _least_squares(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(a, b) of y = a + b x; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return mean_y - b * mean_x, b


def fit(summary: dict) -> dict:
    """maintenance = a + b log2 N from the idle phases; bytes per key = c0 + c1 log2 N from the
    first advertisements (every C, pooled; see _per_key). The steady phases check the rate they
    predict."""
    sizes = summary["sizes"]
    idle_points = [(math.log2(int(n)), rate) for n, s in sizes.items() if (rate := _idle_rate(s)) is not None]
    key_points = [(math.log2(int(n)), value) for n, s in sizes.items() for value in _per_key(int(n), s)]
    maintenance = _least_squares([x for x, _ in idle_points], [y for _, y in idle_points])
    per_key = _least_squares([x for x, _ in key_points], [y for _, y in key_points])
    return {
        "maintenance": dict(zip(("a", "b"), maintenance, strict=True)) if maintenance else None,
        "per_key": dict(zip(("c0", "c1"), per_key, strict=True)) if per_key else None,
    }


def predicted_rate(summary: dict, n: int, keys: float, interval_s: float) -> float | None:
    """Per-node bytes/s from the fitted constants: maintenance (0 when none was measured) +
    (C/T) bytes per key."""
    fitted = summary["fit"]
    if not fitted["per_key"]:
        return None
    x = math.log2(n)
    m = fitted["maintenance"]
    maintenance = m["a"] + m["b"] * x if m else 0.0
    return maintenance + keys / interval_s * (fitted["per_key"]["c0"] + fitted["per_key"]["c1"] * x)


def interval_of(summary: dict, steady: dict) -> float:
    """A steady phase's T (a merged summary holds several)."""
    return steady.get("interval_s", summary["settings"]["interval_s"])


def _steady_phases(summary: dict) -> list[tuple[str, dict]]:
    return [
        (n, p)
        for n, size in summary["sizes"].items()
        for p in size["phases"]
        if p["phase"].startswith("steady")
    ]


def merge(summaries: list[dict]) -> dict:
    """One summary of several runs (each with its own T, say): every size's phases, in run order;
    a steady phase keeps its run's T. Joins, idle and churn are read from the first run that has
    them."""
    merged: dict = {"settings": dict(summaries[0]["settings"]), "build": summaries[0]["build"], "sizes": {}}
    for summary in summaries:
        for n, size in summary["sizes"].items():
            phases = [
                {**p, "interval_s": interval_of(summary, p)} if p["phase"].startswith("steady") else p
                for p in size["phases"]
            ]
            target = merged["sizes"].setdefault(
                n, {k: v for k, v in size.items() if k != "phases"} | {"phases": []}
            )
            target["phases"] += phases
    merged["sizes"] = dict(sorted(merged["sizes"].items(), key=lambda item: int(item[0])))
    merged["settings"]["sizes"] = [int(n) for n in merged["sizes"]]
    merged["settings"]["datasets"] = sorted({c for s in summaries for c in s["settings"]["datasets"]})
    merged["settings"]["intervals_s"] = sorted({s["settings"]["interval_s"] for s in summaries})
    merged["fit"] = fit(merged)
    return merged


def markdown(summary: dict) -> str:
    settings = summary["settings"]
    intervals = sorted({interval_of(summary, p) for _, p in _steady_phases(summary)}) or [
        settings["interval_s"]
    ]
    lines = [
        "# DHT traffic: measured against the research model",
        "",
        f"Sizes {_listed(settings['sizes'])}; datasets per node {_listed(settings['datasets'])}; "
        f"T = {_listed(intervals)} s; build: {summary['build']['image'] or 'reference'}. Bytes are Kad-DHT "
        "messages sent (network total / N).",
        "",
        "## Maintenance (idle) and advertising one key",
        "",
    ]
    rows = []
    for n, size in summary["sizes"].items():
        idle = _idle_rate(size)
        values = _per_key(int(n), size)
        per_key = f"{sum(values) / len(values):.0f}" if values else "-"  # every upload overlapped
        rows.append(
            [
                n,
                f"{idle:.1f}" if idle is not None else "-",
                f"{model_maintenance(int(n)):.0f}",
                per_key,
                f"{model_per_key(int(n)):.0f}",
                f"{_phase(size, 'join')['bytes_per_node']:.0f}",
                f"{size['ready_s']:.0f}" if "ready_s" in size else "-",
            ]
        )
    lines += md_table(
        [
            "N",
            "idle B/s/node",
            "model B/s",
            "B per advertised key",
            "model B/key",
            "join B/node",
            "up and ready s",
        ],
        rows,
    )
    steady_rows = []
    for n, p in _steady_phases(summary):
        idle_rate = _idle_rate(summary["sizes"][n]) or 0.0
        c, interval = p["datasets"], interval_of(summary, p)
        predicted = predicted_rate(summary, int(n), c, interval)
        model = model_maintenance(int(n)) + c / interval * model_per_key(int(n))
        steady_rows.append(
            [
                n,
                str(c),
                f"{interval:g}",
                f"{p['rate_per_node']:.0f}",
                f"{p['rate_per_node'] - idle_rate:.0f}",
                f"{predicted:.0f}" if predicted is not None else "-",
                f"{model:.0f}",
            ]
        )
    if steady_rows:
        lines += ["", "## Steady state: every key re-advertised once per T", ""]
        lines += md_table(
            [
                "N",
                "C",
                "T s",
                "measured B/s/node",
                "of which advertising",
                "fitted model B/s",
                "research model B/s",
            ],
            steady_rows,
        )
    churn_rows = []
    for n, size in summary["sizes"].items():
        if (churn := _phase(size, "churn")) is not None:
            first_join = _phase(size, "join")["bytes_per_node"] * int(n) / (int(n) - 1)
            churn_rows.append(
                [
                    n,
                    f"{churn['per_min']:g}",
                    str(churn["crashes"]),
                    f"{churn['seconds']:.0f}",
                    f"{churn['bytes_per_crash']:.0f}",
                    f"{first_join:.0f}",
                ]
            )
    if churn_rows:
        lines += ["", "## Churn: a node crashes, comes back and joins again through d000", ""]
        lines += md_table(
            ["N", "crashes/min", "crashes", "s", "B per crash and rejoin", "B per first join"], churn_rows
        )
    lines += ["", "## Fitted constants", "", *_fit_lines(summary)]
    lines += ["", "Plot: dht.png."]
    return "\n".join(lines) + "\n"


def _listed(values: list[int]) -> str:
    return ", ".join(map(str, values))


def _fit_lines(summary: dict) -> list[str]:
    fitted = summary["fit"]
    m, k = fitted["maintenance"], fitted["per_key"]
    if not k:
        return ["Fewer than two sizes: no fit."]
    lines = [
        f"- maintenance = {m['a']:.1f} + {m['b']:.1f} log2 N B/s (research: 6.67 + 48.2 log2 N)"
        if m
        else "- maintenance: not measured (no idle phase at two sizes); counted as 0 below",
        f"- bytes per advertised key = {k['c0']:.0f} + {k['c1']:.0f} log2 N (research: 3744 + 14460 log2 N)",
        "",
        "What the constants give for the research's cases (per node, KB/s; advertising's share):",
        "",
    ]
    rows = []
    for n, c, t in ((10_000, 27, 1800), (10_000, 417, 1800), (10_000, 417, 22 * 3600), (100_000, 417, 1800)):
        x = math.log2(n)
        maintenance = m["a"] + m["b"] * x if m else 0.0
        advertising = c / t * (k["c0"] + k["c1"] * x)
        research = model_maintenance(n) + c / t * model_per_key(n)
        share = advertising / (maintenance + advertising)
        rows.append(
            [
                f"{n:,}",
                str(c),
                f"{t / 60:.0f} min",
                f"{(maintenance + advertising) / 1000:.2f}",
                f"{share:.1%}",
                f"{research / 1000:.2f}",
            ]
        )
    return lines + md_table(["N", "C", "T", "measured constants KB/s", "advertising", "research KB/s"], rows)


def plot(summary: dict, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (idle_ax, key_ax, rate_ax) = plt.subplots(1, 3, figsize=(17, 4.5))
    sizes = [int(n) for n in summary["sizes"]]
    xs = [math.log2(n) for n in sizes]
    idle = [(math.log2(int(n)), r) for n, s in summary["sizes"].items() if (r := _idle_rate(s)) is not None]
    idle_ax.plot([x for x, _ in idle], [y for _, y in idle], "o", label="measured (idle)")
    idle_ax.plot(xs, [model_maintenance(n) for n in sizes], "--", label="research model")
    key_points = [
        (math.log2(int(n)), value) for n, s in summary["sizes"].items() for value in _per_key(int(n), s)
    ]
    key_ax.plot([x for x, _ in key_points], [y for _, y in key_points], "o", label="measured")
    key_ax.plot(xs, [model_per_key(n) for n in sizes], "--", label="research model")
    fitted = summary["fit"]
    if fitted["maintenance"]:
        m = fitted["maintenance"]
        idle_ax.plot(xs, [m["a"] + m["b"] * x for x in xs], "-", label="fit")
    if fitted["per_key"]:
        k = fitted["per_key"]
        key_ax.plot(xs, [k["c0"] + k["c1"] * x for x in xs], "-", label="fit")
    for n in sizes:  # steady rate against C/T: the research's advertising term is linear in it
        points = [
            (p["datasets"] / interval_of(summary, p), p["rate_per_node"])
            for m, p in _steady_phases(summary)
            if int(m) == n
        ]
        if points:
            (line,) = rate_ax.plot(
                [x for x, _ in points], [y for _, y in points], "o", label=f"N={n} measured"
            )
            top, color = max(x for x, _ in points), line.get_color()
            research = [model_maintenance(n) + x * model_per_key(n) for x in (0.0, top)]
            rate_ax.plot([0.0, top], research, "--", color=color, label=f"N={n} research model")
            if fitted["per_key"]:
                predicted = [predicted_rate(summary, n, x, 1.0) for x in (0.0, top)]
                rate_ax.plot([0.0, top], predicted, "-", color=color, label=f"N={n} fit")
    rate_ax.set(xlabel="C/T (keys re-advertised per second)", ylabel="B/s per node", title="steady state")
    idle_ax.set(xlabel="log2 N", ylabel="B/s per node", title="maintenance")
    key_ax.set(xlabel="log2 N", ylabel="bytes", title="one key advertised")
    for ax in (idle_ax, key_ax, rate_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    figure.tight_layout()
    figure.savefig(file)
    plt.close(figure)
