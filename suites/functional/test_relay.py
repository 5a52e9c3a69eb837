"""Circuit relay v2 between nodes that cannot reach each other (each behind its own NAT).

Topology `nat-relay`: up-a (port-restricted) and down-b (symmetric) reserve on `relay-open`
(no limits); up-c and down-d on `relay-default` (go/nim defaults: circuit 120 s / 128 KiB).
Outcomes are written to artifacts/relay/outcomes.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import requests

from harness.clients.codex import CodexApiError, CodexClient, circuit_addresses
from harness.impl import CAP_CONNECTIONS, CAP_NAT_TRAVERSAL
from harness.net import sockets
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.topology.plan import LISTEN_PORT, PCAP_DIR
from harness.waits import NotYet, wait_until

pytestmark = [pytest.mark.nat, pytest.mark.relay]
TOPOLOGY = "nat-relay"
PAIRS = {"relay-open": ("up-a", "down-b"), "relay-default": ("up-c", "down-d")}
UPGRADABLE = ("up-e", "down-f")  # both port-restricted, on relay-default
UPGRADE_DEADLINE_S = 45
DOWNLOAD_TIMEOUT_S = 90


def relay_info(testbed: Testbed, relay: str) -> dict:
    response = requests.get(testbed.plan.relays[relay].info_url, timeout=10)
    response.raise_for_status()
    return response.json()


def connect_through_relay(testbed: Testbed, dialer: str, listener: str) -> None:
    """The dialer reaches the listener only at its /p2p-circuit address."""
    info = testbed.client(listener).debug_info()
    testbed.client(dialer).connect(info["id"], circuit_addresses(info))


def fetch(testbed: Testbed, node: str, cid: str) -> tuple[bytes, float, str]:
    """A network download, bounded: (bytes received, seconds, how it ended)."""
    start = time.monotonic()
    body = b""
    try:
        with requests.get(
            f"{testbed.plan.nodes[node].api_url}/data/{cid}/network/stream", stream=True, timeout=30
        ) as response:
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if time.monotonic() - start > DOWNLOAD_TIMEOUT_S:
                    return body, time.monotonic() - start, "client deadline"
        ended = f"stream ended ({response.status_code})"
    except requests.RequestException as exc:
        ended = f"{type(exc).__name__}"
    return body, time.monotonic() - start, ended


def record_outcome(key: str, outcome: dict) -> None:
    folder = artifacts_dir("relay")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"outcome-{key}.json").write_text(json.dumps(outcome, indent=2))
    print(f"{key}: {outcome}")


def test_the_relay_sees_every_natted_node_as_its_router(testbed: Testbed) -> None:
    for relay, nodes in PAIRS.items():
        seen = {peer["id"]: peer["address"].split(":")[0] for peer in relay_info(testbed, relay)["peers"]}
        for node in nodes:
            plan = testbed.plan.nodes[node]
            router = testbed.plan.router_of(node)
            peer_id = testbed.client(node).peer_id()
            assert seen[peer_id] == router.public_ip, f"{relay} sees {node} at {seen[peer_id]}"
            assert seen[peer_id] != plan.ip


def test_natted_nodes_exchange_a_dataset_through_an_unlimited_relay(testbed: Testbed) -> None:
    uploader, downloader = PAIRS["relay-open"]
    data = os.urandom(8 * 1024 * 1024)
    cid = testbed.client(uploader).upload(data)

    connect_through_relay(testbed, downloader, uploader)
    body, seconds, ended = fetch(testbed, downloader, cid)

    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest(), ended
    record_outcome(
        "symmetric-dials-port-restricted-unlimited",
        {
            "outcome": "relayed",
            "bytes": len(body),
            "seconds": round(seconds, 2),
            "mb_s": round(len(body) / seconds / 1e6, 2),
        },
    )


def test_default_limits_end_the_transfer_with_the_relay_limit_not_a_hang(testbed: Testbed) -> None:
    uploader, downloader = PAIRS["relay-default"]
    small = os.urandom(16 * 1024)
    large = os.urandom(4 * 1024 * 1024)
    small_cid = testbed.client(uploader).upload(small)
    large_cid = testbed.client(uploader).upload(large)
    connect_through_relay(testbed, downloader, uploader)

    small_body, _, _ = fetch(testbed, downloader, small_cid)
    assert small_body == small, "16 KiB fits in a 128 KiB circuit"

    connect_through_relay(testbed, downloader, uploader)  # a new circuit: the limit is per circuit
    body, seconds, ended = fetch(testbed, downloader, large_cid)

    assert len(body) < len(large), "4 MiB cannot cross a 128 KiB circuit"
    assert seconds < DOWNLOAD_TIMEOUT_S, f"the download hung until the client deadline ({ended})"

    def relay_logged_the_limit() -> str:
        logs = testbed.container("relay-default").logs().decode(errors="replace")
        lines = [line for line in logs.splitlines() if "data limit exceeded" in line]
        if not lines:
            raise NotYet("no limit line in the relay's log yet")
        return lines[-1]

    evidence = wait_until("relay-default to log the data limit", relay_logged_the_limit, 10)
    record_outcome(
        "symmetric-dials-port-restricted-default-limits",
        {
            "outcome": "relay limit",
            "bytes": len(body),
            "seconds": round(seconds, 2),
            "ended": ended,
            "relay": evidence.strip()[-160:],
        },
    )


@pytest.mark.needs(CAP_NAT_TRAVERSAL, CAP_CONNECTIONS)  # DCUtR in the node; `connections[].direct`
def test_default_limits_matter_not_once_dcutr_upgrades_to_direct(testbed: Testbed) -> None:
    """The other clear outcome: two port-restricted NATs, a relay with go/nim limits. The relayed
    connection carries DCUtR's exchange, the hole punch makes a direct connection, and a dataset
    far above the circuit's 128 KiB then crosses it whole."""
    uploader, downloader = UPGRADABLE
    data = os.urandom(4 * 1024 * 1024)
    cid = testbed.client(uploader).upload(data)
    start = time.monotonic()
    connect_through_relay(testbed, downloader, uploader)
    uploader_id = testbed.client(uploader).peer_id()
    router = testbed.plan.router_of(uploader)

    def hole_punched() -> list[sockets.TcpConnection]:
        """From down-f's own sockets. Observed: the reference node (py-libp2p 0.8.1) lists its
        hole-punched connection in `connections` only once a stream has been opened to the peer
        (the download below opens them), so the node's own report is checked after the transfer."""
        held = sockets.established(testbed.container(downloader), testbed.plan.project)
        direct = [c for c in held if c.remote_ip == router.public_ip]
        if not direct:
            raise NotYet(f"down-f's TCP connections: {', '.join(c.remote for c in held)}")
        return direct

    punched = wait_until("DCUtR's hole punch down-f -> up-e", hole_punched, UPGRADE_DEADLINE_S, interval_s=1)
    upgraded_s = time.monotonic() - start
    body, seconds, ended = fetch(testbed, downloader, cid)

    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), ended
    entries = [
        c for c in testbed.client(downloader).debug_info()["connections"] if c["peerId"] == uploader_id
    ]
    assert any(entry["direct"] for entry in entries), (
        f"down-f reports no direct connection to up-e: {entries}"
    )
    # the uploader's router captured the transfer on its WAN leg, straight to the other router
    other = testbed.plan.seen_as(downloader)
    payload = (
        f"tcpdump -nr {PCAP_DIR}/wan.pcap 'tcp and dst host {other}' 2>/dev/null"
        " | awk '{n += $NF} END {print n+0}'"  # each line ends with the TCP payload length
    )

    def captured() -> int:
        sent = int(testbed.container(router.name).exec_run(["sh", "-c", payload]).output)
        if sent < len(data):
            raise NotYet(f"{sent} TCP payload bytes to {other} in the capture")
        return sent

    captured_bytes = wait_until("the capture of the direct transfer", captured, 10)
    assert (testbed.save_artifacts() / "pcap" / f"{router.name}-wan.pcap").exists()
    record_outcome(
        "port-restricted-both-default-limits",
        {
            "outcome": "upgraded to direct (DCUtR)",
            "seconds_to_direct": round(upgraded_s, 2),
            "direct_tcp_rtt_ms": punched[0].rtt_ms,
            "bytes": len(body),
            "seconds": round(seconds, 2),
            "mb_s": round(len(body) / seconds / 1e6, 2),
            "captured_tcp_payload_bytes_router_to_router": captured_bytes,
        },
    )


def test_without_the_circuit_address_there_is_no_path(testbed: Testbed) -> None:
    """Negative control: down-d dials up-a (never connected) at its LAN address and at its
    router's WAN address: both fail, so the transfers above could only use the relay."""
    target = testbed.plan.nodes["up-a"]
    router = testbed.plan.router_of("up-a")
    client: CodexClient = testbed.client("down-d")
    for address in (f"/ip4/{target.ip}/tcp/{LISTEN_PORT}", f"/ip4/{router.public_ip}/tcp/{LISTEN_PORT}"):
        with pytest.raises(CodexApiError, match="Unable to dial peer"):
            client.connect(testbed.client("up-a").peer_id(), [address])
