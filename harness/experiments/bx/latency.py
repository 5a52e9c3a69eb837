"""Single-request latency: how long one block takes by round-trip time.

One node per RTT (a link of RTT/2 each way; none at 0) holds a 16-block dataset. The probe asks
each node, block after block: want-have (until the presence answer), then want-block (until the
block is delivered, its hash and Merkle proof checked). A request's time is the protocol's own:
one round trip for the presence, one for the block plus its transfer. The first exchange with
each node, which dials it, is not counted.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.experiments.bx.common import BLOCK, link, md_table, p50_p95, percentiles, up, upload
from harness.experiments.bx.probe import Probe, bx_peer, tree_of
from harness.selection import BuildUnderTest

RTTS_MS = (0, 20, 80, 200)
BLOCKS = 16
PHASES = ("want_have", "want_block", "total")


def node_name(rtt_ms: int) -> str:
    return f"rtt-{rtt_ms}"


def run(build: BuildUnderTest, echo: Callable[[str], None], samples: int = 40) -> dict:
    rng = random.Random(1)
    nodes = {node_name(rtt): {"kind": "codex", **link(rtt)} for rtt in RTTS_MS}
    rows = []
    with up("bx-latency", nodes, build) as testbed, Probe() as probe:
        for rtt in RTTS_MS:
            node = node_name(rtt)
            tree = tree_of(testbed, node, upload(testbed, node, BLOCKS * BLOCK, rng))
            peer = bx_peer(testbed, node)
            probe.ask("want_have", peer, tree, 0)  # the dial and the stream, not counted
            times: dict[str, list[float]] = {phase: [] for phase in PHASES}
            for index in range(samples):
                have = probe.ask("want_have", peer, tree, index % BLOCKS)["ms"]
                block = probe.ask("want_block", peer, tree, index % BLOCKS)["ms"]
                for phase, ms in zip(PHASES, (have, block, have + block), strict=True):
                    times[phase].append(ms)
            row = {"rtt_ms": rtt, **{phase: percentiles(times[phase]) for phase in PHASES}}
            echo(f"  RTT {rtt} ms: want-have p50 {row['want_have']['p50']:.1f} ms, "
                 f"want-block p50 {row['want_block']['p50']:.1f} ms")  # fmt: skip
            rows.append(row)
    return {"rows": rows}


def table(results: dict[str, dict]) -> list[str]:
    headers = ["build", "RTT ms", *(f"{phase.replace('_', '-')} p50 / p95 ms" for phase in PHASES), "samples"]
    rows = [
        [build, str(row["rtt_ms"]), *(p50_p95(row[p], "{:.1f}") for p in PHASES), str(row["total"]["n"])]
        for build, result in results.items()
        for row in result["rows"]
    ]
    return md_table(headers, rows)


def plot(results: dict[str, dict], axes) -> None:
    for build, result in results.items():
        rtts = [row["rtt_ms"] for row in result["rows"]]
        for phase, style in (("want_have", "o-"), ("want_block", "s--")):
            p50s = [row[phase]["p50"] for row in result["rows"]]
            axes.plot(rtts, p50s, style, label=f"{build} {phase.replace('_', '-')} p50")
    axes.plot(RTTS_MS, RTTS_MS, ":", color="grey", label="one round trip")
    axes.set_xlabel("round-trip time (ms)")
    axes.set_ylabel("latency (ms)")
    axes.set_title("single request by RTT")
    axes.legend(fontsize="small")
