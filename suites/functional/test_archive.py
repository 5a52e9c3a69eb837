"""Community History Archives over Logos Storage, end to end: the archive scenarios of
docs/status-ref.md ("The archive suite").

An owner and three members (topology `archive`: each peer's storage node embedded, as status-go
ships it; test_archive_poc.py runs the same tests on `archive-poc`, each peer driving a separate
node over REST). Every test uses its own community on the same owner, so the tests are
independent. Assertions are on the exact messages a member ends up with, the archive IDs it
records, and the bytes the owner's storage serves, never only on a call returning. Time to history
(link published -> messages imported) is written to artifacts/archive/time-to-history-<scenario>.json.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from statusref.protobufs import ArchiveIndex, WakuMessageArchive

from harness.clients.codex import CodexClient
from harness.clients.status import (
    Signal,
    StatusClient,
    chat_texts,
    connect_storage,
    create_community,
    join_community,
    storage_info,
    wire_chat,
)
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until

pytestmark = [pytest.mark.archive]
TOPOLOGY = "archive"
INTERVAL_S = 6  # the owner's archive interval (status-go's default is 7 days; its tests use 10-80 s)
IMPORT_DELAY_S = 1
ROUND_S = 3 * INTERVAL_S  # deadline for anything that takes one archive round
MEMBERS = ("alice", "bob", "carol")
NO_REST = "an embedded storage node serves no REST (libstorage turns it off): the owner's repo is unreachable"


@dataclass(frozen=True)
class ArchiveStorage:
    """Where the suite reads what the owner serves and plants what members should fetch, through
    public contracts only. Separate form: the owner's own node over REST. Embedded form: the
    `observer` node of the build under test, connected to the owner's storage node (reads come
    over the network, from the owner) and to every member's (what it holds, they can fetch)."""

    node: CodexClient
    owners_repo: bool  # `node` is the owner's own node: its local state is the owner's

    def read(self, cid: str) -> bytes:
        return self.node.download(cid) if self.owners_repo else self.node.network_stream(cid)

    def plant(self, data: bytes) -> str:
        return self.node.upload(data)


def archive_storage(testbed: Testbed) -> ArchiveStorage:
    owner = testbed.plan.status["owner"]
    if owner.embedded:
        return ArchiveStorage(testbed.client("observer"), owners_repo=False)
    return ArchiveStorage(testbed.client(owner.codex), owners_repo=True)


def owners_repo(testbed: Testbed) -> CodexClient:
    """The owner's own storage node, for what only its repo shows; skips on the embedded form."""
    storage = archive_storage(testbed)
    if not storage.owners_repo:
        pytest.skip(NO_REST)
    return storage.node


def connect_embedded_storage(testbed: Testbed, clients: dict[str, StatusClient]) -> None:
    """As upstream's archive test: every member's storage node to the owner's, by hand; and the
    observer to everyone's (the reference node has no DHT to find providers through)."""
    observer = testbed.client("observer")
    for name in MEMBERS:
        connect_storage(clients[name], clients["owner"])
    for client in clients.values():
        info = storage_info(client)
        observer.connect(info["id"], info["addrs"])


@pytest.fixture(scope="module")
def peers(testbed: Testbed) -> Iterator[dict[str, StatusClient]]:
    clients = {name: testbed.status(name) for name in ("owner", *MEMBERS)}
    clients["owner"].create_account_and_login("owner", INTERVAL_S, IMPORT_DELAY_S)
    embedded = testbed.plan.status["owner"].embedded
    # the owner's storage node bootstraps the members' (status-go's logosStorageConfigBootstrapNode),
    # so a member's node that restarts at its next login finds the owner again
    owner_spr = storage_info(clients["owner"])["spr"] if embedded else None
    for name in MEMBERS:
        clients[name].create_account_and_login(name, INTERVAL_S, IMPORT_DELAY_S, storage_bootstrap=owner_spr)
    wire_chat(list(clients.values()), testbed.plan.waku.info_url)
    if embedded:
        connect_embedded_storage(testbed, clients)
    yield clients


def community_of(event: dict, community_id: str) -> bool:
    return event.get("communityId") == community_id


def expect_for(
    client: StatusClient, kind: str, community: str, since: int, timeout_s: float = ROUND_S
) -> Signal:
    """The first `kind` signal about `community` that `client` got after mark `since`."""
    return client.signals.expect(kind, lambda e: community_of(e, community), timeout_s, since)


def wait_one_more_round(owner: StatusClient, community: str) -> None:
    """Until the owner's next archive round for `community` has passed, so what was sent before
    it is older than the chat transport's message cache (gossipsub hands recent messages to new
    subscribers, as a Waku store node would): after this, history can only come from archives."""
    mark = owner.signals.mark()
    expect_for(owner, "community.noHistoryArchivesCreated", community, mark)


def texts_imported(member: StatusClient, chat: str, community: str, since: int) -> list[str]:
    """Texts `member` received after it started importing the community's archives; asserts that
    none of the chat's messages arrived before that (so they came from the archive)."""
    started = expect_for(member, "community.importingHistoryArchiveMessages", community, since, 5)
    position = member.signals.signals.index(started)
    in_chat = lambda e: e["messages"][0]["chatId"] == chat  # noqa: E731
    early = [
        s for s in member.signals.signals[since:position] if s.type == "messages.new" and in_chat(s.event)
    ]
    assert early == [], f"messages arrived before the import: {[s.event for s in early]}"
    return [s.event["messages"][0]["text"] for s in member.signals.find("messages.new", in_chat, position)]


def record_time_to_history(scenario: str, seconds: float) -> None:
    folder = artifacts_dir("archive")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"time-to-history-{scenario}.json").write_text(
        json.dumps({"scenario": scenario, "seconds": seconds})
    )
    print(f"time to history ({scenario}): {seconds:.2f} s")


def wait_for_log(testbed: Testbed, peer: str, pattern: str, deadline_s: float = ROUND_S) -> str:
    """A log line of `peer` matching `pattern`: evidence of what it decided, with a deadline."""
    regex = re.compile(pattern)

    def probe() -> str:
        logs = testbed.container(peer).logs().decode(errors="replace")
        found = [line for line in logs.splitlines() if regex.search(line)]
        if not found:
            raise NotYet(f"no log line matching {pattern!r} yet")
        return found[-1]

    return wait_until(f"{peer} to log {pattern!r}", probe, deadline_s)


def current_index(codex: CodexClient, community_id: str) -> ArchiveIndex:
    """The community's index among the owner's uploads: an `archive-index.bin` whose archives
    cover the community's content topics (superseded indexes are deleted, so there is one)."""
    found = []
    for item in codex.list():
        if item["manifest"].get("filename") == "archive-index.bin":
            index = ArchiveIndex.decode(codex.download(item["cid"]))
            if all(community_id.encode() in entry.metadata.topics for entry in index.archives.values()):
                found.append(index)
    assert len(found) == 1, f"{len(found)} indexes of {community_id} on the owner's storage node"
    return found[0]


def test_owner_publishes_an_archive_the_member_downloads_and_decodes(testbed, peers) -> None:
    """Scenario 1: a message, one interval -> historyArchivesCreated, hasCommunityArchive, the
    index on the owner's Codex decodes and its archive holds exactly that message."""
    owner, alice = peers["owner"], peers["alice"]
    community, chat = create_community(owner, "scenario-1")
    join_community(owner, alice, community)
    mark_owner, mark_alice = owner.signals.mark(), alice.signals.mark()

    sent = owner.rpc(
        "wakuext_sendChatMessage", {"chatId": chat, "text": "first archived message", "contentType": 1}
    )
    created = expect_for(owner, "community.historyArchivesCreated", community, mark_owner)
    seeding = expect_for(owner, "community.historyArchivesSeeding", community, mark_owner, 5)
    downloaded = expect_for(alice, "community.historyArchiveDownloaded", community, mark_alice)
    finished = expect_for(alice, "community.downloadingHistoryArchivesFinished", community, mark_alice)

    assert owner.rpc("wakuext_hasCommunityArchive", community) is True
    index_cid = expect_for(
        alice, "community.historyArchiveIndexDownloadCompleted", community, mark_alice, 5
    ).event["indexCid"]
    index = ArchiveIndex.decode(archive_storage(testbed).read(index_cid))
    assert len(index.archives) == 1
    archive_id, entry = next(iter(index.archives.items()))
    assert archive_id == entry.archive_id, "keys are the Keccak-256 of the marshalled entry"
    assert (entry.metadata.start, entry.metadata.end) == (downloaded.event["from"], downloaded.event["to"])
    archive = WakuMessageArchive.decode(archive_storage(testbed).read(entry.cid))
    texts = [json.loads(m.payload)["message"]["text"] for m in archive.messages]
    assert texts == ["first archived message"]
    assert json.loads(archive.messages[0].payload)["message"]["id"] == sent["messages"][0]["id"]
    assert alice.rpc("wakuext_getDownloadedMessageArchiveIDs", community) == [archive_id]
    assert chat_texts(alice, chat) == ["first archived message"]
    assert created.event["to"] >= created.event["from"]
    record_time_to_history("1-owner-publishes", finished.at - seeding.at)


def test_no_messages_means_no_archive_and_no_link(peers) -> None:
    """Scenario 2: two rounds without messages -> noHistoryArchivesCreated, no link, nothing downloaded."""
    owner, bob = peers["owner"], peers["bob"]
    mark = owner.signals.mark()
    community, chat = create_community(owner, "scenario-2")
    join_community(owner, bob, community)

    first = expect_for(owner, "community.noHistoryArchivesCreated", community, mark)
    expect_for(owner, "community.noHistoryArchivesCreated", community, owner.signals.signals.index(first) + 1)

    assert (
        owner.signals.find("community.historyArchivesCreated", lambda e: community_of(e, community), mark)
        == []
    )
    assert owner.rpc("wakuext_hasCommunityArchive", community) is False
    assert bob.rpc("wakuext_getDownloadedMessageArchiveIDs", community) == []
    assert chat_texts(bob, chat) == []


def test_each_round_adds_an_archive_and_replaces_the_index(testbed, peers) -> None:
    """Scenario 4: two rounds -> the member has 1 then 2 archive IDs; a new index CID each round;
    the superseded index is deleted (unseeded) on the owner's Codex node."""
    owner, bob = peers["owner"], peers["bob"]
    community, chat = create_community(owner, "scenario-4")
    join_community(owner, bob, community)
    indexes = []
    for round_number, text in enumerate(("round one", "round two"), start=1):
        mark_owner, mark_bob = owner.signals.mark(), bob.signals.mark()
        owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": text, "contentType": 1})
        expect_for(owner, "community.historyArchivesCreated", community, mark_owner)
        seeding = expect_for(owner, "community.historyArchivesSeeding", community, mark_owner, 5)
        finished = expect_for(bob, "community.downloadingHistoryArchivesFinished", community, mark_bob)
        indexes.append(
            expect_for(bob, "community.historyArchiveIndexDownloadCompleted", community, mark_bob, 5).event[
                "indexCid"
            ]
        )
        assert len(bob.rpc("wakuext_getDownloadedMessageArchiveIDs", community)) == round_number
        record_time_to_history(f"4-round-{round_number}", finished.at - seeding.at)

    assert indexes[0] != indexes[1]
    assert len(ArchiveIndex.decode(archive_storage(testbed).read(indexes[1])).archives) == 2
    if archive_storage(testbed).owners_repo:  # embedded: NO_REST (the unseeding is not observable)
        owner_node = owners_repo(testbed)
        assert owner_node.exists(indexes[0]) is False, "the old index is unseeded on the owner"
        assert owner_node.exists(indexes[1]) is True
    assert chat_texts(bob, chat) == ["round one", "round two"]


def test_a_late_joiner_gets_the_history_from_the_archive(peers) -> None:
    """Scenario 5: messages sent before carol joined reach her only through the archive (the
    chat transport keeps no history): the join response carries the link, she imports."""
    owner, alice, carol = peers["owner"], peers["alice"], peers["carol"]
    community, chat = create_community(owner, "scenario-5")
    join_community(owner, alice, community)
    mark_owner = owner.signals.mark()
    texts = ["before carol 1", "before carol 2", "before carol 3"]
    for text in texts:
        owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": text, "contentType": 1})
    expect_for(owner, "community.historyArchivesCreated", community, mark_owner)
    wait_one_more_round(owner, community)
    assert chat_texts(carol, chat) == []

    mark_carol = carol.signals.mark()
    joined_at = time.monotonic()
    join_community(owner, carol, community)
    finished = expect_for(carol, "community.downloadingHistoryArchivesFinished", community, mark_carol)

    assert sorted(texts_imported(carol, chat, community, mark_carol)) == texts
    assert chat_texts(carol, chat) == texts
    record_time_to_history("5-late-joiner", finished.at - joined_at)


def test_a_member_logged_out_during_creation_gets_the_archive_after_login(peers) -> None:
    """Scenario 8: bob logs out, the owner archives a message bob never saw live, bob logs back
    in: the link reaches him (the owner's description carries it), he fetches and imports the
    archive and holds the message exactly once."""
    owner, bob = peers["owner"], peers["bob"]
    community, chat = create_community(owner, "scenario-8")
    join_community(owner, bob, community)
    key_uid = bob.signals.find("node.login")[0].event["keyUid"]
    bob.logout()
    mark_owner = owner.signals.mark()
    owner.rpc(
        "wakuext_sendChatMessage", {"chatId": chat, "text": "sent while bob was away", "contentType": 1}
    )
    expect_for(owner, "community.historyArchivesCreated", community, mark_owner)

    wait_one_more_round(owner, community)

    mark_bob = bob.signals.mark()
    logged_in_at = time.monotonic()
    bob.login(key_uid)
    finished = expect_for(bob, "community.downloadingHistoryArchivesFinished", community, mark_bob)

    # The message itself may also come back through the chat transport after the reconnect (py-libp2p
    # gossipsub replays its cache to a returning peer, as a Waku store would); either way bob must
    # have fetched and imported the archive, and hold the message exactly once.
    assert len(bob.rpc("wakuext_getDownloadedMessageArchiveIDs", community)) == 1
    assert bob.signals.find(
        "community.importingHistoryArchiveMessages", lambda e: community_of(e, community), mark_bob
    )
    assert chat_texts(bob, chat) == ["sent while bob was away"]
    record_time_to_history("8-relogin", finished.at - logged_in_at)


def test_missing_or_corrupt_index_fails_visibly_and_imports_nothing(testbed, peers) -> None:
    """Scenario 10 (index): an index CID nobody holds -> the timeout, one retry, then failure (a
    second timeout, or the Codex node giving up with 404 after its block retries);
    index bytes that are not an index -> failure. Nothing is recorded or imported."""
    owner, alice = peers["owner"], peers["alice"]
    community, chat = create_community(owner, "scenario-10")
    join_community(owner, alice, community)
    storage = archive_storage(testbed)
    gone = storage.plant(os.urandom(1000))
    storage.node.delete(gone)
    garbage = storage.plant(b"not an archive index " * 50)
    mark = alice.signals.mark()

    owner.rpc("testbed_publishArchiveLink", community, gone, int(time.time() * 1000))
    wait_for_log(testbed, "alice", rf"index {gone} timed out after 5 s, retrying once")
    wait_for_log(
        testbed, "alice", rf"index {gone} download failed: (StorageTimeout|StorageError: .*)", deadline_s=30
    )
    owner.rpc("testbed_publishArchiveLink", community, garbage, int(time.time() * 1000))
    wait_for_log(testbed, "alice", rf"index {garbage} download failed: .*(DecodeError|ValueError|KeyError)")

    assert (
        alice.signals.find(
            "community.historyArchiveIndexDownloadCompleted", lambda e: community_of(e, community), mark
        )
        == []
    )
    assert alice.rpc("wakuext_getDownloadedMessageArchiveIDs", community) == []
    assert chat_texts(alice, chat) == []


def test_an_archive_gone_from_every_provider_is_skipped_and_the_rest_imports(testbed, peers) -> None:
    """Scenario 10 (archive): of two archives, the older is deleted from its only provider before
    carol joins: she imports the newer one, and the missing one is logged, not counted."""
    owner_node = owners_repo(testbed)  # the archive is deleted from its only provider, the owner
    owner, carol = peers["owner"], peers["carol"]
    community, chat = create_community(owner, "scenario-10b")
    for text in ("lost with its archive", "kept in the newer archive"):
        mark = owner.signals.mark()
        owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": text, "contentType": 1})
        expect_for(owner, "community.historyArchivesCreated", community, mark)
    entries = current_index(owner_node, community).newest_first()
    assert len(entries) == 2
    lost_id, lost = entries[1]
    owner_node.delete(lost.cid)
    wait_one_more_round(owner, community)

    mark = carol.signals.mark()
    join_community(owner, carol, community)
    expect_for(carol, "community.downloadingHistoryArchivesFinished", community, mark, 40)

    wait_for_log(testbed, "carol", rf"archive {lost_id} \({lost.cid}\) not downloaded")
    assert carol.rpc("wakuext_getDownloadedMessageArchiveIDs", community) == [entries[0][0]]
    assert texts_imported(carol, chat, community, mark) == ["kept in the newer archive"]
    assert chat_texts(carol, chat) == ["kept in the newer archive"]


def test_stale_repeated_forged_and_own_links_are_ignored(testbed, peers) -> None:
    """Scenario 11: an older clock, the same link again, a link signed by a member and the owner's
    own link are each ignored for the stated reason, and the member keeps the real history."""
    owner, alice, bob = peers["owner"], peers["alice"], peers["bob"]
    community, chat = create_community(owner, "scenario-11")
    join_community(owner, alice, community)
    join_community(owner, bob, community)
    mark_owner, mark_bob = owner.signals.mark(), bob.signals.mark()
    owner.rpc("wakuext_sendChatMessage", {"chatId": chat, "text": "the real history", "contentType": 1})
    expect_for(owner, "community.historyArchivesCreated", community, mark_owner)
    current = expect_for(bob, "community.historyArchiveIndexDownloadCompleted", community, mark_bob).event[
        "indexCid"
    ]
    decoy = archive_storage(testbed).plant(b"decoy " * 100)

    owner.rpc("testbed_publishArchiveLink", community, decoy, 1)
    wait_for_log(testbed, "bob", rf"ignored archive link {decoy} \(clock 1\): clock older than")
    owner.rpc("testbed_publishArchiveLink", community, current, int(time.time() * 1000))
    wait_for_log(testbed, "bob", rf"ignored archive link {current} .*: the link already seen")
    alice.rpc("testbed_publishArchiveLink", community, decoy, int(time.time() * 1000))
    wait_for_log(
        testbed, "bob", rf"ignored archive link {decoy} .*: signed by 0x[0-9a-f]+, not by the control node"
    )
    wait_for_log(testbed, "owner", rf"ignored archive link {decoy} .*: this peer is the control node")

    assert (
        bob.signals.find(
            "community.historyArchiveIndexDownloadCompleted", lambda e: community_of(e, community), mark_bob
        )[-1].event["indexCid"]
        == current
    )
    assert chat_texts(bob, chat) == ["the real history"]
    assert (
        owner.signals.find(
            "community.downloadingHistoryArchivesStarted", lambda e: community_of(e, community)
        )
        == []
    )
