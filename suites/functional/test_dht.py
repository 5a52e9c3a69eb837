"""Kad-DHT discovery in the Logos era: nodes the testbed connected to one bootstrap node alone
fill their routing tables from it, a manifest's provider records reach the peers closest to it,
and a download finds its provider through the DHT. Only what upstream serves is read:
/debug/info `table.nodes` and nim-libp2p's kad_* counters on /metrics."""

from __future__ import annotations

import pytest

from harness.clients.metrics import scrape_by_label
from harness.impl import CAP_KAD_DHT
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until
from suites.functional.helpers import random_bytes, sha256

pytestmark = [pytest.mark.dht, pytest.mark.needs(CAP_KAD_DHT)]
TOPOLOGY = "dht"
NODES = ("boot", "a", "b", "c", "d")
SENT, RECEIVED = "kad_messages_sent_total", "kad_messages_received_total"


def kad_messages(testbed: Testbed, node: str) -> dict[tuple[str, str], float]:
    return scrape_by_label(testbed.plan.nodes[node].metrics_url, {SENT, RECEIVED}, "type")


def table_peers(testbed: Testbed, node: str) -> set[str]:
    return {entry["peerId"] for entry in testbed.client(node).debug_info()["table"]["nodes"]}


def test_routing_tables_fill_from_one_bootstrap_node(testbed: Testbed) -> None:
    ids = {node: testbed.client(node).peer_id() for node in NODES}

    def everyone_known() -> bool:
        for node in NODES:
            missing = {
                other
                for other, peer in ids.items()
                if other != node and peer not in table_peers(testbed, node)
            }
            if missing:
                raise NotYet(f"{node}'s routing table lacks {sorted(missing)}")
        return True

    # each node dialled `boot` alone; the others came from its self-lookup through `boot`
    wait_until("every routing table to hold the four other nodes", everyone_known, 60)


def test_a_download_finds_its_provider_through_the_dht(testbed: Testbed) -> None:
    data = random_bytes(3 * 64 * 1024 + 100)
    before = {node: kad_messages(testbed, node) for node in NODES}
    cid = testbed.client("d").upload(data)

    def recorded() -> bool:
        holders = [
            n
            for n in NODES[:-1]
            if kad_messages(testbed, n).get((RECEIVED, "addProvider"), 0)
            > before[n].get((RECEIVED, "addProvider"), 0)
        ]
        if len(holders) < 4:
            raise NotYet(f"only {holders} hold d's provider record")
        return True

    # a network of five: the k = 20 closest to the manifest are all four others
    wait_until("d's provider record on the four other nodes", recorded, 60)
    assert sha256(testbed.client("a", timeout_s=120).network_stream(cid)) == sha256(data)
    asked = kad_messages(testbed, "a").get((SENT, "getProviders"), 0) - before["a"].get(
        (SENT, "getProviders"), 0
    )
    assert asked >= 1, "the download asked the DHT for the manifest's providers"
