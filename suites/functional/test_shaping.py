"""Link shaping: a rate-limited link really limits BlockExchange, in both directions."""

from __future__ import annotations

import time

import pytest

from harness.net.plumbing import run_in_netns
from harness.testbed import Testbed
from suites.functional.helpers import random_bytes

pytestmark = [pytest.mark.blockexchange, pytest.mark.faults, pytest.mark.timing]
TOPOLOGY = "shaped"
MIB = 1024 * 1024
LINK_BYTES_PER_S = 16e6 / 8


def fetch_seconds(testbed: Testbed, node: str, cid: str, blocks: int) -> float:
    client = testbed.client(node)
    target = client.space()["totalBlocks"] + blocks + 1
    start = time.monotonic()
    client.network_download(cid)
    while client.space()["totalBlocks"] < target:
        assert time.monotonic() - start < 120, f"{node} did not finish"
        time.sleep(0.05)
    return time.monotonic() - start


def test_both_directions_of_the_link_carry_a_rate_limit(testbed: Testbed) -> None:
    node = testbed.plan.nodes["codex-2"]
    qdiscs = run_in_netns(testbed.container("codex-2"), ["tc", "qdisc", "show"], testbed.plan.project)
    assert qdiscs.count("tbf 2:") == 2, qdiscs  # its interface (egress) and ifb0 (ingress)
    assert "rate 16Mbit" in qdiscs and "ifb0" in qdiscs
    assert node.link is not None and node.link.up.rate == node.link.down.rate == "16mbit"


def test_a_rate_limited_node_downloads_at_its_link_rate(testbed: Testbed) -> None:
    size = 6 * MIB
    shaped_cid = testbed.client("codex-1").upload(random_bytes(size))
    free_cid = testbed.client("codex-1").upload(random_bytes(size))
    shaped_s = fetch_seconds(testbed, "codex-2", shaped_cid, 96)
    free_s = fetch_seconds(testbed, "codex-3", free_cid, 96)
    rate = size / shaped_s
    print(f"shaped: {rate / 1e6:.2f} MB/s ({shaped_s:.2f}s), unshaped: {size / free_s / 1e6:.1f} MB/s")
    assert rate <= 1.2 * LINK_BYTES_PER_S, "the link limit did not hold"
    assert rate >= 0.4 * LINK_BYTES_PER_S, "far slower than the link: something else is wrong"
    assert shaped_s > 2 * free_s
