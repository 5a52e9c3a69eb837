"""Archive distribution at community scale: how fast a community's members get their history,
and how much of it the owner alone has to serve.

One owner behind a port-restricted NAT and N members spread over four NAT classes (public,
port-restricted, CGNAT, symmetric; each NATed member behind its own router), every status peer
embedding its storage node, one relay with go/nim's default limits and the Waku fleet node. The
owner archives about 30 MB; then the members log in and each member's storage node is connected
by hand, as upstream's archive test does, to the owner's and to `links` other members' (a seeded
choice; besides them a member finds the providers its Kad-DHT names, DHT servers). Two phases on
one testbed, each a community of its own:

- `online`: every member joins; each one's time to history (joined -> the archive imported) and
  the bytes each storage node served (BlockExchange blocks sent x 64 KiB, from its `/metrics`).
- `owner-offline`: a new archive; every member joins, and the owner logs out (its storage node
  stops) once the first `offline_after` members have their history: who still gets it, from whom.

`testbed experiment community` writes results.json, report.md (a table per phase, by NAT class)
and community.png (time to history per member, bytes served by the owner against the members).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.clients.codex import circuit_addresses
from harness.clients.metrics import scrape
from harness.clients.status import (
    StatusClient,
    StatusRpcError,
    chat_texts,
    connect_storage,
    create_community,
    join_community,
    storage_info,
    wire_chat,
)
from harness.errors import WaitTimeout
from harness.experiments.bx.common import BLOCK, md_table, percentiles
from harness.parallel import all_of
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.topology import loader
from harness.topology.model import HEALTHCHECK_RARELY_S, Topology
from harness.topology.plan import METRICS_PORT
from harness.waits import NotYet, wait_until

CLASSES = ("public", "port-restricted", "cgnat", "symmetric")
INTERVAL_S = 30  # the owner's archive interval: the history is sent inside one window
MESSAGE_CHARS = 500_000  # a chat message well under gossipsub's 1 MiB RPC limit
SENT_METRIC = "block_exchange_blocks_sent_total"  # after the era's prefix (the embedded node's: storage_)
PREFIX = "storage_"
LOGIN_BATCH = 4
# Storage dials by hand at once. Most go through the one relay to a NATed peer: 80 at once (20
# members) timed the owner's inbound upgrades out, and more than half the dials failed.
DIALS_AT_ONCE = 4


@dataclass(frozen=True)
class Settings:
    members: int = 20
    archive_mb: int = 30
    links: int = 3  # other members each member's storage node dials
    offline_after: int = 5  # members with their history before the owner leaves (phase 2)
    deadline_s: float = 600  # per phase
    seed: int = 1
    status_image: str | None = None  # a status-backend image (embedding its own storage); None: ours


def member_names(count: int) -> dict[str, str]:
    """member name -> its NAT class, round robin over CLASSES."""
    return {f"m{i:02d}": CLASSES[i % len(CLASSES)] for i in range(count)}


def topology(settings: Settings) -> Topology:
    """The community as a topology document, checked by the loader like a file."""
    networks: dict[str, dict] = {
        "wan": {"kind": "wan"},
        "owner-home": {"kind": "lan", "nat": "port-restricted"},
    }
    # the reference peer's storage node reserves on the testbed's relay; an image finds its own
    peer_keys = {"image": settings.status_image} if settings.status_image else {"relay": "relay"}
    nodes: dict[str, dict] = {
        "relay": {"kind": "relay", "profile": "default"},
        "owner": {"kind": "status", "role": "owner", "network": "owner-home", **peer_keys},
    }
    for name, nat in member_names(settings.members).items():
        peer = {"kind": "status", "role": "member", **peer_keys}
        if nat != "public":
            networks[f"home-{name}"] = {"kind": "lan", "nat": nat}
            peer["network"] = f"home-{name}"
        nodes[name] = peer
    document = {
        "name": "community",
        "description": "archive distribution at community scale (harness/experiments/community.py)",
        "peering": "none",
        "seed": settings.seed,
        "healthcheck_interval": HEALTHCHECK_RARELY_S,
        "networks": networks,
        "nodes": nodes,
    }
    return loader.parse(yaml.safe_dump(document), Path("<experiment community>"))


def blocks_sent(testbed: Testbed, peer: str) -> float:
    """The peer's embedded storage node's BlockExchange blocks sent (0 once it is stopped)."""
    try:
        samples = scrape(f"http://{testbed.plan.status[peer].ip}:{METRICS_PORT}/metrics")
        return samples.get(PREFIX + SENT_METRIC, 0.0)
    except OSError:
        return 0.0


def reserved(peer: StatusClient, name: str) -> None:
    """Until the peer's storage node lists a relayed address (a real image's may never: then
    the members dial its direct addresses alone)."""

    def holds_slot() -> bool:
        if not circuit_addresses(storage_info(peer)):
            raise NotYet(f"{name}'s storage node holds no relay reservation yet")
        return True

    wait_until(f"{name}'s storage node to reserve on the relay", holds_slot, 60)


def archive(owner: StatusClient, community: str, chat: str, messages: int, tag: str) -> int:
    """`messages` chat messages inside one archive window, archived; their payload bytes."""
    about = lambda e: e.get("communityId") == community  # noqa: E731
    owner.signals.expect("community.noHistoryArchivesCreated", about, 2 * INTERVAL_S, owner.signals.mark())
    mark, sent = owner.signals.mark(), 0
    for i in range(messages):
        text = f"{tag}-{i:03d}-".ljust(MESSAGE_CHARS, "x")
        owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": text, "contentType": 1})
        sent += len(text)
    owner.signals.expect("community.historyArchivesCreated", about, INTERVAL_S + 30, mark)
    return sent


class Phase:
    """One community's distribution: every member joins (the owner accepts each), then how each
    one's history arrives; `leave_after` members with their history, the owner logs out."""

    def __init__(self, testbed: Testbed, peers: dict[str, StatusClient], classes: dict[str, str]) -> None:
        self.testbed, self.peers, self.classes = testbed, peers, classes
        self.members = list(classes)
        self.joined: dict[str, float] = {}
        self.done: dict[str, float] = {}  # member -> seconds from its join to its history
        self.owner_sent_at_exit: float | None = None  # its counter, read before it stopped
        self.lock = threading.Lock()

    def run(
        self, community: str, chat: str, messages: int, settings: Settings, leave_after: int | None,
        echo: Callable[[str], None],
    ) -> dict:  # fmt: skip
        served_before = {name: blocks_sent(self.testbed, name) for name in self.peers}
        end = time.monotonic() + settings.deadline_s
        marks = {m: self.peers[m].signals.mark() for m in self.members}
        all_of([lambda m=m: self._join(m, community, end) for m in self.members])
        all_of(
            [
                lambda m=m: self._wait(m, community, chat, messages, marks[m], end, leave_after, echo)
                for m in self.members
            ]
        )
        after = {name: blocks_sent(self.testbed, name) for name in self.peers}
        if self.owner_sent_at_exit is not None:
            after["owner"] = self.owner_sent_at_exit
        served = {name: max(0.0, after[name] - served_before[name]) * BLOCK for name in self.peers}
        return {
            "owner_left_after": leave_after if self.owner_sent_at_exit is not None else None,
            "members": {
                m: {"nat": self.classes[m], "joined": m in self.joined, "seconds": self.done.get(m)}
                for m in self.members
            },
            "by_class": {nat: self._class_row(nat) for nat in CLASSES},
            "bytes_served": {
                "owner": served["owner"],
                "members": sum(bytes_ for name, bytes_ in served.items() if name != "owner"),
            },
            "bytes_served_by_peer": served,
        }

    def _class_row(self, nat: str) -> dict:
        names = [m for m in self.members if self.classes[m] == nat]
        times = [self.done[m] for m in names if m in self.done]
        row = {
            "members": len(names),
            "joined": sum(m in self.joined for m in names),
            "got_history": len(times),
        }
        if times:
            sample = percentiles(times)
            row |= {"p50_s": sample["p50"], "p95_s": sample["p95"]}
        return row

    def _join(self, name: str, community: str, end: float) -> None:
        """A member the owner did not accept before the deadline is reported as not joined."""
        try:
            join_community(
                self.peers["owner"], self.peers[name], community, deadline_s=max(1.0, end - time.monotonic())
            )
        except WaitTimeout:
            return
        self.joined[name] = time.monotonic()

    def _wait(
        self, name: str, community: str, chat: str, messages: int, mark: int, end: float,
        leave_after: int | None, echo: Callable[[str], None],
    ) -> None:  # fmt: skip
        client = self.peers[name]
        if name not in self.joined:
            return

        def history() -> bool:
            held = len(chat_texts(client, chat))
            if held < messages:
                raise NotYet(f"{name} holds {held} of {messages} messages")
            return True

        try:
            finished = client.signals.expect(
                "community.downloadingHistoryArchivesFinished",
                lambda e: e.get("communityId") == community,
                max(1.0, end - time.monotonic()),
                mark,
            )
            wait_until(f"{name}'s history", history, max(1.0, end - time.monotonic()), interval_s=1)
        except Exception:  # the deadline: this member did not get its history (reported, not raised)
            return
        with self.lock:
            # when the import finished (the signal's arrival), not when this thread looked
            self.done[name] = finished.at - self.joined[name]
            count = len(self.done)
            echo(f"  {count}/{len(self.members)} members have their history ({name}, {self.classes[name]})")
            if leave_after is not None and count == leave_after:
                self.owner_sent_at_exit = blocks_sent(self.testbed, "owner")
                self.peers["owner"].logout()  # its storage node stops: the rest must come from members
                echo(f"  the owner logged out after {count} members")


def run(settings: Settings, echo: Callable[[str], None] = print, out: Path | None = None) -> Path:
    """Both phases on one testbed; returns the report folder."""
    folder = out or artifacts_dir("experiments") / f"community-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    classes = member_names(settings.members)
    rng = random.Random(settings.seed)
    messages = max(1, settings.archive_mb * 1_000_000 // MESSAGE_CHARS)
    echo(f"community: 1 owner and {settings.members} members ({', '.join(CLASSES)}): bringing it up")
    results: dict[str, dict] = {}
    with Testbed.up(topology(settings), log=lambda _: None) as testbed, _evidence(testbed, folder):
        peers = {name: testbed.status(name) for name in ("owner", *classes)}
        owner = peers["owner"]
        owner.create_account_and_login("owner", INTERVAL_S, import_delay_s=1)
        wire_chat([owner], testbed.plan.waku.info_url)
        reserved(owner, "owner")
        for phase, leave_after in (("online", None), ("owner-offline", settings.offline_after)):
            community, chat = create_community(owner, phase)
            echo(f"{phase}: the owner archives {messages} messages ({settings.archive_mb} MB)")
            sent = archive(owner, community, chat, messages, phase)
            if phase == "online":  # the members arrive after the history was archived
                log_in(peers, list(classes), echo)
                wire_chat([peers[m] for m in classes], testbed.plan.waku.info_url)
                all_of([lambda m=m: reserved(peers[m], m) for m in classes])
            dials = _connect(peers, list(classes), settings.links, rng)
            echo(f"  storage connections: {dials['connected']} of {dials['dials']} dials")
            result = Phase(testbed, peers, classes).run(
                community, chat, messages, settings, leave_after, echo
            )
            results[phase] = {"archive_payload_bytes": sent, "storage_dials": dials, **result}
            served = result["bytes_served"]
            echo(f"  served: owner {served['owner'] / 1e6:.0f} MB, members {served['members'] / 1e6:.0f} MB")
    summary = {"settings": settings.__dict__, "phases": results}
    (folder / "results.json").write_text(json.dumps(summary, indent=2))
    (folder / "report.md").write_text(markdown(summary))
    plot(summary, folder / "community.png")
    return folder


@contextmanager
def _evidence(testbed: Testbed, folder: Path) -> Iterator[None]:
    """Every peer's log into the report, whether the run ends well or not: why a member got
    nothing, or what stopped the run."""
    try:
        yield
    finally:
        testbed.save_artifacts(folder / "testbed")


def log_in(peers: dict[str, StatusClient], members: list[str], echo: Callable[[str], None]) -> None:
    """The members create their accounts and log in, LOGIN_BATCH at a time: each login starts a
    storage node and a chat transport, and twenty at once starve a 2-core machine."""
    for start in range(0, len(members), LOGIN_BATCH):
        batch = members[start : start + LOGIN_BATCH]
        all_of([lambda m=m: peers[m].create_account_and_login(m, INTERVAL_S, 1) for m in batch])
    echo(f"  {len(members)} members logged in")


def _connect(peers: dict[str, StatusClient], members: list[str], links: int, rng: random.Random) -> dict:
    """Every member's storage node to the owner's and to `links` other members' (by hand); how
    many of those dials connected (a pair neither side of which can reach the other fails), and
    what each failed one answered."""
    pairs = [(m, "owner") for m in members]
    for member in members:
        others = [o for o in members if o != member]
        pairs += [(member, other) for other in rng.sample(others, min(links, len(others)))]

    def dial(dialer: str, target: str) -> str | None:
        try:
            connect_storage(peers[dialer], peers[target])
            return None
        except StatusRpcError as exc:
            return str(exc)

    errors = all_of([lambda d=d, t=t: dial(d, t) for d, t in pairs], limit=DIALS_AT_ONCE)
    failed = {f"{d} -> {t}": error for (d, t), error in zip(pairs, errors, strict=True) if error}
    return {"dials": len(pairs), "connected": len(pairs) - len(failed), "failed": failed}


def markdown(summary: dict) -> str:
    settings = summary["settings"]
    lines = [
        "# Archive distribution at community scale",
        "",
        f"1 owner (port-restricted NAT) and {settings['members']} members; an archive of "
        f"{settings['archive_mb']} MB; each member's storage node connected to the owner's and to "
        f"{settings['links']} other members'; one relay with default limits (128 KiB / 120 s a circuit).",
    ]
    for phase, result in summary["phases"].items():
        lines += ["", f"## {phase}", ""]
        if result.get("owner_left_after"):
            lines += [
                f"The owner logged out once {result['owner_left_after']} members had their history.",
                "",
            ]
        rows = [
            [
                nat,
                str(row["members"]),
                str(row["joined"]),
                str(row["got_history"]),
                f"{row['p50_s']:.1f}" if "p50_s" in row else "-",
                f"{row['p95_s']:.1f}" if "p95_s" in row else "-",
            ]
            for nat, row in result["by_class"].items()
        ]
        lines += md_table(["NAT class", "members", "joined", "got the history", "p50 s", "p95 s"], rows)
        served = result["bytes_served"]
        total = served["owner"] + served["members"]
        share = f"{served['owner'] / total:.0%}" if total else "-"
        lines += [
            "",
            f"Bytes served (BlockExchange blocks sent x 64 KiB): owner {served['owner'] / 1e6:.0f} MB, "
            f"members {served['members'] / 1e6:.0f} MB; the owner's share {share}.",
            *_dial_lines(result.get("storage_dials")),
        ]
    lines += ["", "Plot: community.png."]
    return "\n".join(lines) + "\n"


def _dial_lines(dials: dict | None) -> list[str]:
    """How many storage dials connected, and the answers of the failed ones, most common first."""
    if not dials:
        return []
    lines = ["", f"Storage dials by hand: {dials['connected']} of {dials['dials']} connected."]
    answers = Counter(dials.get("failed", {}).values())
    lines += [f"- {count} failed: {answer}" for answer, count in answers.most_common()]
    return lines


def plot(summary: dict, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times_ax, bytes_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    markers = dict(zip(CLASSES, "osD^", strict=True))
    for phase, style in zip(summary["phases"], ("-", "--"), strict=False):
        members = summary["phases"][phase]["members"]
        done = sorted((m["seconds"], m["nat"]) for m in members.values() if m["seconds"] is not None)
        times_ax.plot([s for s, _ in done], range(1, len(done) + 1), style, color="grey", label=phase)
        for nat in CLASSES:
            points = [(s, i + 1) for i, (s, n) in enumerate(done) if n == nat]
            times_ax.plot(
                [p[0] for p in points], [p[1] for p in points], markers[nat], label=f"{phase}: {nat}"
            )
    times_ax.set_xlabel("joined -> history imported (s)")
    times_ax.set_ylabel("members with their history")
    times_ax.legend(fontsize="small")
    phases = list(summary["phases"])
    owner = [summary["phases"][p]["bytes_served"]["owner"] / 1e6 for p in phases]
    members = [summary["phases"][p]["bytes_served"]["members"] / 1e6 for p in phases]
    bytes_ax.bar(phases, owner, label="owner")
    bytes_ax.bar(phases, members, bottom=owner, label="members")
    bytes_ax.set_ylabel("MB served (BlockExchange blocks)")
    bytes_ax.legend()
    figure.tight_layout()
    figure.savefig(file)
    plt.close(figure)
