"""What the BlockExchange experiments share: their topologies (built as data), datasets, the
nodes' BlockExchange counters under either era's prefix, and percentiles."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import yaml

from harness.selection import BuildUnderTest
from harness.testbed import Testbed
from harness.topology import loader
from harness.topology.model import Topology

BLOCK = 64 * 1024  # both eras' default block size
# the nodes' counters (after the metric prefix of the node's era: `codex_` or `storage_`)
RECEIVED = "block_exchange_blocks_received_total"
DUPLICATE = "block_exchange_duplicate_blocks_received_total"
SPURIOUS = "block_exchange_spurious_blocks_received_total"


def topology(name: str, nodes: dict[str, dict], seed: int = 1) -> Topology:
    """A topology from data, checked by the same loader as a file (errors name the experiment)."""
    document = {"name": name, "description": f"BlockExchange experiment {name}", "seed": seed, "nodes": nodes}
    return loader.parse(yaml.safe_dump(document), Path(f"<experiment {name}>"))


def link(rtt_ms: float, jitter_ms: float = 0) -> dict:
    """A node `rtt_ms` away from everyone (half each way); no link conditions at 0."""
    if not rtt_ms and not jitter_ms:
        return {}
    return {"link": {"delay_ms": rtt_ms / 2, "jitter_ms": jitter_ms / 2}}


def upload(testbed: Testbed, node: str, size: int, rng: random.Random) -> str:
    return testbed.client(node, timeout_s=300).upload(rng.randbytes(size))


def counters(testbed: Testbed, node: str) -> dict[str, float]:
    samples, prefix = testbed.metrics(node), testbed.plan.nodes[node].profile.metric_prefix
    return {
        name: samples.get(prefix + metric, 0.0)
        for name, metric in (("received", RECEIVED), ("duplicate", DUPLICATE), ("spurious", SPURIOUS))
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 (inclusive quantiles) of a sample, and its size."""
    if len(values) < 2:
        return {"n": len(values), "p50": values[0] if values else 0.0, "p95": values[0] if values else 0.0}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"n": len(values), "p50": statistics.median(values), "p95": cuts[18]}


def stream_all(testbed: Testbed, node: str, cid: str) -> int:
    """A network download of the whole dataset on `node`, bytes discarded; its length."""
    with testbed.client(node, timeout_s=600).request(
        "GET", f"/data/{cid}/network/stream", stream=True, timeout=600
    ) as response:
        response.raise_for_status()
        return sum(len(part) for part in response.iter_content(1 << 20))


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""

    def line(cells: list[str]) -> str:
        return f"| {' | '.join(cells)} |"

    return [line(headers), "|---" * len(headers) + "|", *map(line, rows)]


def p50_p95(sample: dict[str, float], form: str = "{:.0f}") -> str:
    return f"{form.format(sample['p50'])} / {form.format(sample['p95'])}"


def up(name: str, nodes: dict[str, dict], build: BuildUnderTest, seed: int = 1) -> Testbed:
    """An experiment's testbed, quiet (the experiment reports its own progress)."""
    return Testbed.up(topology(name, nodes, seed), log=lambda _: None, build=build)
