"""Link conditions (delay, jitter, loss) hold as declared, with or without netem in the kernel,
and BlockExchange still delivers every byte across them."""

from __future__ import annotations

import ast
import re
import statistics

import pytest

from harness.net import sockets
from harness.net.plumbing import netem_available
from harness.testbed import Testbed
from harness.waits import wait_until
from suites.functional.helpers import random_bytes, sha256

pytestmark = [pytest.mark.blockexchange, pytest.mark.faults]
TOPOLOGY = "conditioned"
MIB = 1024 * 1024
ROUND_TRIP_MS = 80  # codex-2's 40 ms each way


def rtts_to(testbed: Testbed, node: str, peer: str) -> list[float]:
    """The kernel's smoothed RTTs of `node`'s TCP connections to `peer`."""
    peer_ip = testbed.plan.nodes[peer].ip
    connections = sockets.established(testbed.container(node), testbed.plan.project)
    return [c.rtt_ms for c in connections if c.remote_ip == peer_ip and c.rtt_ms is not None]


def transfer(testbed: Testbed, source: str, target: str, size: int) -> None:
    data = random_bytes(size)
    cid = testbed.client(source).upload(data)
    assert sha256(testbed.client(target, timeout_s=180).network_stream(cid)) == sha256(data)


def test_a_delayed_link_shows_its_round_trip_in_the_kernels_rtt(testbed: Testbed) -> None:
    transfer(testbed, "codex-1", "codex-2", 1 * MIB)  # so the connection's RTT has many samples
    rtts = rtts_to(testbed, "codex-2", "codex-1")
    assert rtts, "codex-2 holds no TCP connection to codex-1"
    assert ROUND_TRIP_MS * 0.9 <= statistics.median(rtts) <= ROUND_TRIP_MS * 1.5, rtts
    unconditioned = rtts_to(testbed, "codex-3", "codex-1")
    assert unconditioned and max(unconditioned) < 20, unconditioned


def test_blockexchange_delivers_every_byte_over_delay_and_over_loss(testbed: Testbed) -> None:
    transfer(testbed, "codex-1", "codex-2", 4 * MIB)
    transfer(testbed, "codex-2", "codex-3", 4 * MIB)


def stage_counters(testbed: Testbed, node: str) -> dict[str, dict[str, int]]:
    """The link stage's counters per direction, asked for now (SIGUSR1) and read from its log."""
    stage = testbed.containers()[f"link-stage-{node}"]
    before = stage.logs().count(b"\n")
    stage.kill(signal="SIGUSR1")
    wait_until(f"{node}'s link stage to report", lambda: stage.logs().count(b"\n") > before, 10)
    line = stage.logs().decode().splitlines()[-1]
    return {name: ast.literal_eval(counters) for name, counters in re.findall(r"(up|down) (\{[^}]*\})", line)}


def test_the_link_stage_loses_the_declared_share_of_packets(testbed: Testbed) -> None:
    if netem_available(testbed.container("codex-1"), testbed.plan.project):
        pytest.skip("this kernel has netem: the conditions are netem's, no link stage runs")
    transfer(testbed, "codex-1", "codex-3", 4 * MIB)
    counters = stage_counters(testbed, "codex-3")
    assert set(counters) == {"down"}, "only codex-3's way in is conditioned"
    down = counters["down"]
    assert down["packets"] > 500, down
    assert 0.015 <= down["dropped"] / down["packets"] <= 0.05, down
