"""The Kubernetes render's peering Job, run for real: its script, generated from a plan's edges,
connects nodes the testbed left unconnected, through their public REST contract alone, as the
Job does on a cluster (where it reaches the pods by DNS name instead of address)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.ready.readiness import missing_peers
from harness.render import kubernetes
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until

pytestmark = [pytest.mark.kubernetes]
TOPOLOGY = "unpeered"
EDGES = [("a", "b"), ("a", "c"), ("b", "c")]  # what a mesh of the three would plan
SCRIPT_DEADLINE_S = 60


def test_the_peering_jobs_script_connects_every_edge_of_the_plan(testbed: Testbed) -> None:
    plan = replace(testbed.plan, edges=EDGES)
    script = kubernetes.peering_script(plan, api_url=lambda p, node: p.nodes[node].api_url)
    # the Job runs it in a node's image, as here; `timeout` stands in for activeDeadlineSeconds
    exit_code, output = testbed.container("a").exec_run(
        ["timeout", str(SCRIPT_DEADLINE_S), "/bin/sh", "-c", script]
    )
    text = output.decode(errors="replace")
    assert exit_code == 0, f"the peering script failed ({exit_code}):\n{text}"
    assert text.splitlines() == [f"connected {a} -> {b}" for a, b in EDGES]

    ids = {name: testbed.client(name).debug_info()["id"] for name in plan.nodes}

    def connected() -> bool:
        why = {}
        for name, node in plan.nodes.items():
            expected = {ids[b if a == name else a] for a, b in EDGES if name in (a, b)}
            if reason := missing_peers(node, node.profile.peering, expected):
                why[name] = reason
        if why:
            raise NotYet(f"not connected yet: {why}")
        return True

    wait_until("every node to see its two peers", connected, 30)
