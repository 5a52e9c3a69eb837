"""A 30 MB community history archive across NATs (topology `archive-nat`), every status peer
embedding its storage node as status-go ships it, with status-go's own download timeouts (index
20 s, each archive 30 s to start and 30 s of polling).

The owner sits behind a port-restricted NAT; alice behind a symmetric one, bob behind a CGNAT,
carol on the WAN; every storage node reserves on one relay with go/nim's default limits (128 KiB
and 120 s per circuit). Each member's storage node dials the owner's at its relayed address, as
upstream's archive test connects storage nodes by hand; DCUtR then upgrades what Table B of
docs/nat.md says it upgrades. The members join after the owner archived the history, so what
they hold of it came from the archive alone. Asserted per member: the path its node ends up on
(from its own kernel's sockets), and whether the 33 messages arrive; for alice, how it fails: her
node gets the index and the manifest through the circuit, so she records the archive as
downloaded (status-go polls `Exists`, which is true once the manifest is local), but its blocks
stop at the relay's data limit (the relay logs it) and nothing is imported. Outcomes and times go
to artifacts/archive/nat-<member>.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness.clients.codex import circuit_addresses
from harness.clients.status import (
    StatusClient,
    chat_texts,
    connect_storage,
    create_community,
    join_community,
    storage_info,
    wire_chat,
)
from harness.net import sockets
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until

pytestmark = [pytest.mark.archive, pytest.mark.nat]
TOPOLOGY = "archive-nat"
INTERVAL_S = 30  # long enough to send the 33 messages inside one window
MEMBERS = ("alice", "bob", "carol")
# Table B of docs/nat.md, the member dialling the port-restricted owner
PATH = {"alice": "relayed", "bob": "direct", "carol": "direct"}
MESSAGE_CHARS = 900_000  # a chat message under gossipsub's 1 MiB RPC limit
MESSAGES = 33  # 29.7 MB of payload: one archive (status-go's cap is 30 MB a chunk)
UPGRADE_DEADLINE_S = 45
# status-go's index timeout, then the archive's 30 s start and 30 s of polling, and slack
DOWNLOAD_DEADLINE_S = 20 + 30 + 30 + 30


@pytest.fixture(scope="module")
def peers(testbed: Testbed) -> Iterator[dict[str, StatusClient]]:
    clients = {name: testbed.status(name) for name in ("owner", *MEMBERS)}
    for name, client in clients.items():
        client.create_account_and_login(name, INTERVAL_S, import_delay_s=1)
    wire_chat(list(clients.values()), testbed.plan.waku.info_url)
    yield clients


def direct_paths(testbed: Testbed, member: str) -> list[sockets.TcpConnection]:
    """The member's TCP connections to the owner's router (a hole punched through both NATs),
    as the member's own kernel sees them; relayed traffic goes to the relay's address instead."""
    owner_public = testbed.plan.seen_as("owner")
    held = sockets.established(testbed.container(member), testbed.plan.project)
    return [c for c in held if c.remote_ip == owner_public]


def relayed_address_of(owner: StatusClient) -> dict:
    def reserved() -> dict:
        info = storage_info(owner)
        if not circuit_addresses(info):
            raise NotYet(f"the owner's storage node lists no /p2p-circuit address: {info['addrs']}")
        return info

    return wait_until("the owner's storage node to reserve on the relay", reserved, 60)


def send_history(owner: StatusClient, chat: str) -> int:
    """About 30 MB of chat in one archive window; returns the payload bytes sent."""
    sent = 0
    for i in range(MESSAGES):
        text = f"{i:03d}" + "x" * (MESSAGE_CHARS - 3)
        owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": text, "contentType": 1})
        sent += len(text)
    return sent


def record(member: str, outcome: dict) -> None:
    folder = artifacts_dir("archive")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"nat-{member}.json").write_text(json.dumps(outcome, indent=2))
    print(f"{member}: {outcome}")


def wait_for_round(owner: StatusClient, community: str) -> None:
    """Until the owner's next archive round for `community` has passed (nothing to archive yet),
    so that what is sent now falls into one archive window."""
    owner.signals.expect(
        "community.noHistoryArchivesCreated",
        lambda e: e.get("communityId") == community,
        2 * INTERVAL_S,
        owner.signals.mark(),
    )


def test_a_30_mb_archive_reaches_the_members_dcutr_upgrades_and_not_the_relayed_one(
    testbed: Testbed, peers: dict[str, StatusClient]
) -> None:
    owner = peers["owner"]
    community, chat = create_community(owner, "across-nats")
    wait_for_round(owner, community)
    mark = owner.signals.mark()
    sent = send_history(owner, chat)
    created = owner.signals.expect(
        "community.historyArchivesCreated", lambda e: e.get("communityId") == community, INTERVAL_S + 10, mark
    )

    relayed_address_of(owner)
    for member in MEMBERS:
        connect_storage(peers[member], owner)
    connected_at = time.monotonic()

    def upgraded() -> bool:
        missing = [m for m in MEMBERS if PATH[m] == "direct" and not direct_paths(testbed, m)]
        if missing:
            raise NotYet(f"no direct connection to the owner yet from {', '.join(missing)}")
        return True

    wait_until("DCUtR to upgrade bob's and carol's connections", upgraded, UPGRADE_DEADLINE_S, interval_s=1)
    upgraded_s = time.monotonic() - connected_at

    marks = {member: peers[member].signals.mark() for member in MEMBERS}
    joined_at = {}
    for member in MEMBERS:
        join_community(owner, peers[member], community)
        joined_at[member] = time.monotonic()
    about = lambda e: e.get("communityId") == community  # noqa: E731
    for member in (m for m in MEMBERS if PATH[m] == "direct"):
        client = peers[member]
        finished = client.signals.expect(
            "community.downloadingHistoryArchivesFinished", about, DOWNLOAD_DEADLINE_S, marks[member]
        )
        texts = chat_texts(client, chat)
        outcome = {
            "nat": testbed.plan.status[member].network,
            "path": "direct" if direct_paths(testbed, member) else "relayed",
            "archive_payload_bytes": sent,
            "messages_imported": len(texts),
            "seconds_joined_to_imported": round(finished.at - joined_at[member], 2),
            "seconds_to_direct": round(upgraded_s, 2),
        }
        record(member, outcome)
        assert outcome["path"] == "direct", f"{member}: {outcome}"
        # One archive per round that had messages: a loaded machine may send the history across a
        # round's boundary, and then it is in two archives; the member must have every one.
        rounds = owner.signals.find("community.historyArchivesCreated", about, mark)
        downloaded = client.rpc("wakuext_getDownloadedMessageArchiveIDs", community)
        assert len(downloaded) == len(rounds), f"{member}: {downloaded} for {len(rounds)} rounds"
        assert texts == [f"{i:03d}" + "x" * (MESSAGE_CHARS - 3) for i in range(MESSAGES)], (
            f"{member} imported {len(texts)} of {MESSAGES} messages"
        )

    alice = peers["alice"]
    owner_id = storage_info(owner)["id"]

    def relay_logged_the_limit() -> str:
        lines = [
            line
            for line in testbed.container("relay").logs().decode(errors="replace").splitlines()
            if "data limit exceeded" in line and owner_id in line  # a circuit to the owner's node
        ]
        if not lines:
            raise NotYet("no data limit line in the relay's log yet")
        return lines[-1]

    limit = wait_until("the relay to stop alice's circuit at its data limit", relay_logged_the_limit, 30)
    recorded = alice.signals.find("community.historyArchiveDownloaded", about, marks["alice"])
    texts = chat_texts(alice, chat)
    outcome = {
        "nat": testbed.plan.status["alice"].network,
        "path": "direct" if direct_paths(testbed, "alice") else "relayed",
        "archive_payload_bytes": sent,
        "recorded_as_downloaded": bool(recorded),
        "messages_imported": len(texts),
        "relay": limit.strip()[-160:],
        "seconds_archive_created_to_checked": round(time.monotonic() - created.at, 2),
    }
    record("alice", outcome)
    assert outcome["path"] == "relayed", f"symmetric x port-restricted must stay relayed: {outcome}"
    assert recorded, f"the manifest crossed the circuit, and Exists is true on it alone: {outcome}"
    assert texts == [], f"alice imported history through a 128 KiB circuit? {outcome}"
