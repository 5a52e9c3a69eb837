"""Prefetch interference: do a node's individual requests wait behind a bulk fetch?

A `node` and a `seed`, the seed RTT away (each RTT its own testbed). Two kinds of individual
request are timed on `node`, first idle and then while it downloads large datasets from the seed
in bulk, over and over, from a background thread:
- stream head: `GET /data/{cid}/network/stream` of a fresh small dataset on the seed, until the
  first byte (the manifest and the first block cross the network: the head of a stream);
- block served: a want-block the probe sends `node` for a block it holds (does the node still
  answer its peers promptly while it fetches?).
Only samples taken while the bulk fetch was running count as "busy"; the table says how many.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

from harness.experiments.bx.common import BLOCK, link, md_table, p50_p95, percentiles, stream_all, up, upload
from harness.experiments.bx.probe import Probe, bx_peer, tree_of
from harness.selection import BuildUnderTest
from harness.testbed import Testbed

RTTS_MS = (0, 80)
HEAD_BYTES = 4 * BLOCK
BULK_BYTES = 32 * 1024 * 1024
BULK_DATASETS = 2
BULK_DEADLINE_S = 300  # the busy phase's bound, whatever the samples
LOCAL_BLOCKS = 16
KINDS = ("stream_head", "block_served")


class Bulk:
    """Downloads the datasets over and over on a thread (each deleted once whole, so the next
    pass crosses the network again) until stopped or `BULK_DEADLINE_S` is over; `running` while
    it does."""

    def __init__(self, testbed: Testbed, node: str, cids: list[str]) -> None:
        self.testbed, self.node, self.cids = testbed, node, cids
        self.running, self.stop = threading.Event(), threading.Event()
        self.error: Exception | None = None
        self.bytes = 0
        self.thread = threading.Thread(target=self._fetch, daemon=True)

    def _fetch(self) -> None:
        deadline = time.monotonic() + BULK_DEADLINE_S
        self.running.set()
        try:
            for cid in itertools.cycle(self.cids):
                if self.stop.is_set() or time.monotonic() > deadline:
                    break
                self.bytes += stream_all(self.testbed, self.node, cid)
                self.testbed.client(self.node).delete(cid)
        except Exception as exc:  # reported by the experiment: a bulk that fails measures nothing
            self.error = exc
        finally:
            self.running.clear()

    def __enter__(self) -> Bulk:
        self.thread.start()
        self.running.wait(5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()


def stream_head_ms(testbed: Testbed, node: str, cid: str) -> float:
    start = time.perf_counter()
    with testbed.client(node).request("GET", f"/data/{cid}/network/stream", stream=True) as response:
        response.raise_for_status()
        next(response.iter_content(1))
        elapsed = (time.perf_counter() - start) * 1000
        for _ in response.iter_content(1 << 16):  # the rest, so the node is not left mid-stream
            pass
    return elapsed


def measure(testbed: Testbed, probe: Probe, heads: list[str], tree: str, busy: Bulk | None) -> dict:
    """Alternate the two kinds of request over `heads`; with `busy`, only while it runs."""
    peer = bx_peer(testbed, "node")
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for index, cid in enumerate(heads):
        if busy is not None and not busy.running.is_set():
            break
        times["stream_head"].append(stream_head_ms(testbed, "node", cid))
        times["block_served"].append(probe.ask("want_block", peer, tree, index % LOCAL_BLOCKS)["ms"])
    return {kind: percentiles(values) for kind, values in times.items()}


def run(build: BuildUnderTest, echo: Callable[[str], None], samples: int = 40) -> dict:
    rng = random.Random(2)
    rows = []
    for rtt in RTTS_MS:
        nodes = {"node": {"kind": "codex"}, "seed": {"kind": "codex", **link(rtt)}}
        with up(f"bx-interference-{rtt}", nodes, build) as testbed:
            heads = [upload(testbed, "seed", HEAD_BYTES, rng) for _ in range(2 * samples)]
            bulk = [upload(testbed, "seed", BULK_BYTES, rng) for _ in range(BULK_DATASETS)]
            tree = tree_of(testbed, "node", upload(testbed, "node", LOCAL_BLOCKS * BLOCK, rng))
            with Probe() as probe:
                probe.ask("want_have", bx_peer(testbed, "node"), tree, 0)  # the dial, not counted
                idle = measure(testbed, probe, heads[:samples], tree, None)
                started = time.monotonic()
                with Bulk(testbed, "node", bulk) as fetch:
                    busy = measure(testbed, probe, heads[samples:], tree, fetch)
                if fetch.error is not None:
                    raise fetch.error
                bulk_mb_s = fetch.bytes / (time.monotonic() - started) / 1e6
        row = {"rtt_ms": rtt, "idle": idle, "busy": busy, "bulk_mb_s": bulk_mb_s}
        echo(f"  RTT {rtt} ms: stream head p50 idle {idle['stream_head']['p50']:.0f} ms, "
             f"busy {busy['stream_head']['p50']:.0f} ms ({busy['stream_head']['n']} samples)")  # fmt: skip
        rows.append(row)
    return {"rows": rows}


def table(results: dict[str, dict]) -> list[str]:
    headers = ["build", "RTT ms", "request", "idle p50 / p95 ms", "during bulk p50 / p95 ms"]
    headers += ["busy samples", "bulk MB/s"]
    rows = [
        [build, str(row["rtt_ms"]), kind.replace("_", " "), p50_p95(row["idle"][kind]),
         p50_p95(row["busy"][kind]), str(row["busy"][kind]["n"]), f"{row['bulk_mb_s']:.1f}"]
        for build, result in results.items()
        for row in result["rows"]
        for kind in KINDS
    ]  # fmt: skip
    return md_table(headers, rows)


def plot(results: dict[str, dict], axes) -> None:
    labels, idle, busy = [], [], []
    for build, result in results.items():
        for row in result["rows"]:
            for kind in KINDS:
                labels.append(f"{build}\n{kind.replace('_', ' ')}\nRTT {row['rtt_ms']}")
                idle.append(row["idle"][kind]["p50"])
                busy.append(row["busy"][kind]["p50"])
    positions = range(len(labels))
    axes.bar([p - 0.2 for p in positions], idle, width=0.4, label="idle p50")
    axes.bar([p + 0.2 for p in positions], busy, width=0.4, label="during bulk p50")
    axes.set_xticks(list(positions), labels, fontsize="x-small")
    axes.set_ylabel("ms")
    axes.set_title("individual requests during a bulk fetch")
    axes.legend(fontsize="small")
