"""The reference node's Kad-DHT (codexref/dht): its wire messages, routing table and provider
records; and, over real libp2p on loopback, Logos-era nodes that fill their tables from one
bootstrap node, advertise a manifest, find its provider and download from a peer they were not
connected to, with every message counted in nim-libp2p's kad_* metrics."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from codexref import config, lifecycle
from codexref.dataset import store_stream
from codexref.dht.messages import FIND_NODE, GET_PROVIDERS, Message, Peer
from codexref.dht.routing import (
    BUCKET_SIZE,
    MAX_PROVIDERS_PER_KEY,
    PROVIDER_TTL_S,
    ProviderStore,
    RoutingTable,
    point,
)
from codexref.node import Node
from libp2p.peer.id import ID
from testbed_toolkit.protobuf import DecodeError, bytes_field, varint_field


def test_a_message_survives_encoding_and_unknown_fields_are_skipped() -> None:
    msg = Message(
        GET_PROVIDERS,
        b"\x12\x20" + bytes(32),
        closer_peers=(Peer(b"peer-a", (b"\x04\x7f\x00\x00\x01",)),),
        provider_peers=(Peer(b"peer-b"),),
    )
    assert Message.decode(msg.encode()) == msg
    # py-libp2p's senderRecord (bytes) and nim's providerStatus (varint) both use field 11
    extended = msg.encode() + bytes_field(11, b"signed envelope") + varint_field(11, 1)
    assert Message.decode(extended) == msg
    assert Message.decode(b"").type == 0, "proto3: an absent type is putValue"
    with pytest.raises(DecodeError):
        Message.decode(bytes_field(8, bytes_field(2, b"addr without an id")))


def test_the_table_orders_by_xor_distance_and_a_full_bucket_keeps_its_old_peers() -> None:
    table = RoutingTable(b"local")
    peers = [f"peer-{i}".encode() for i in range(400)]
    inserted = [p for p in peers if table.insert(p)]
    assert not table.insert(b"local"), "we are not in our own table"
    target = point(b"some key")
    closest = table.closest(target, 5)
    assert closest == sorted(inserted, key=lambda p: point(p) ^ target)[:5]
    # about half of all ids share no prefix bit with us: that bucket fills at k and stays so
    far = [p for p in peers if (point(p) ^ table.local).bit_length() == 256]
    assert len(far) > BUCKET_SIZE
    assert sum(p in table for p in far) == BUCKET_SIZE
    assert [p for p in far if p in table] == [p for p in inserted if p in far][:BUCKET_SIZE]
    table.remove(closest[0])
    assert closest[0] not in table
    peer = closest[1]
    table.failed(peer)
    table.failed(peer)
    table.insert(peer)  # it answered: its failures are forgiven
    table.failed(peer)
    table.failed(peer)
    assert peer in table, "two timeouts in a row are no reason to forget a peer"
    table.failed(peer)
    assert peer not in table, "the third is"


def test_provider_records_expire_and_a_key_holds_at_most_twenty() -> None:
    now = [1000.0]
    store = ProviderStore(clock=lambda: now[0])
    for i in range(MAX_PROVIDERS_PER_KEY + 5):
        now[0] += 1
        store.add(b"key", f"p{i}".encode(), ())
    held = store.get(b"key")
    assert len(held) == MAX_PROVIDERS_PER_KEY and b"p0" not in held, "the oldest records make room"
    assert not store.add(b"k" * 81, b"p", ()), "keys longer than 80 bytes are refused"
    now[0] = 1015.5 + PROVIDER_TTL_S  # 48 h after p14 was stored, 10 s before p15 expires
    assert sorted(store.get(b"key")) == sorted(f"p{i}".encode() for i in range(15, 25))
    assert store.expire() == 10 and len(store.records[b"key"]) == 10


def test_the_dht_flags_are_the_logos_eras_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(tmp_path)]
    loaded = config.load(["--impl", "logos-storage", *base, "--advertise-content=false"], environ={})
    assert (loaded.advertise_content, loaded.advertise_interval) == (False, 1800), "upstream's 30 min"
    from_env = config.load(["--impl", "logos-storage", *base], environ={"STORAGE_ADVERTISE_INTERVAL": "90s"})
    assert from_env.advertise_content and from_env.advertise_interval == 90
    with pytest.raises(SystemExit):
        config.load(["--impl", "logos-storage", *base, "--advertise-content=maybe"], environ={})
    assert "not true or false: 'maybe'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the Codex era's discovery is discv5: no such flag
        config.load(["--impl", "codex", *base, "--advertise-interval", "60s"], environ={})


PUBLIC = ("--nat", "extip:127.0.0.1")  # announced, so in DHT server mode from the start


def _node(folder: Path, *flags: str) -> Node:
    argv = ["--impl", "logos-storage", "--data-dir", str(folder), "--listen-ip", "127.0.0.1"]
    return Node(config.load([*argv, "--listen-port", "0", "--block-retries", "20", *flags], environ={}))


async def _started(nursery: trio.Nursery, stop: trio.Event, folder: Path, *flags: str) -> Node:
    """A node running in this process until `stop`."""
    node = _node(folder, *flags)
    await nursery.start(lifecycle.run, node, stop, False)
    return node


def _counted(node: Node, name: str, kind: str) -> float:
    return node.metrics.registry.get_sample_value(f"{name}_total", {"type": kind}) or 0.0


def test_nodes_find_a_provider_through_the_dht_and_download_from_it(tmp_path: Path) -> None:
    data = os.urandom(200_000)

    async def scenario() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                stop = trio.Event()
                seed = await _started(nursery, stop, tmp_path / "seed", *PUBLIC)
                nodes = [seed]
                for i in range(5):
                    bootstrap = ("--bootstrap-node", seed.spr)
                    nodes.append(await _started(nursery, stop, tmp_path / f"n{i}", *PUBLIC, *bootstrap))
                *_, downloader, provider = nodes
                while not all(len(n.dht.table) >= 4 for n in nodes):  # self-lookups from the seed on
                    await trio.sleep(0.1)

                cid = await store_stream(provider.store, _chunks(data), "data.bin", None)
                key = cid.multihash()
                while sum(key in n.dht.providers.records for n in nodes) < 5:  # ADD_PROVIDER to the rest
                    await trio.sleep(0.1)
                assert ID(provider.dht.own_id) in {ID(p) for p in (await downloader.dht.find_providers(key))}

                provider_id = ID(provider.dht.own_id)
                late = await _started(nursery, stop, tmp_path / "late", *PUBLIC)
                assert await late.dht.find_peer(provider_id) == [], "a node in no network finds nobody"
                await late.connect(seed.identity.peer_id, seed.announce_addresses)
                found = await late.dht.find_peer(provider_id)  # /connect without addrs does this
                assert found == provider.announce_addresses, "the peers closest to it named it"
                await downloader.host.disconnect(provider_id)
                assert not downloader.host.get_network().get_connections(provider_id)
                manifest = await downloader.engine.fetch_manifest(cid)
                await downloader.engine.fetch_dataset(manifest)
                assert downloader.store.has(cid), "found through the DHT, dialled, downloaded"
                assert downloader.host.get_network().get_connections(provider_id)

                # Connected, but not a BlockExchange peer (as when its join was never reported):
                # the DHT's answer makes it one, and the download asks it.
                second = await store_stream(provider.store, _chunks(data[::-1]), "second.bin", None)
                while sum(second.multihash() in n.dht.providers.records for n in nodes) < 5:
                    await trio.sleep(0.1)
                downloader.engine.peer_left(provider_id)
                with trio.fail_after(20):
                    await downloader.engine.fetch_dataset(await downloader.engine.fetch_manifest(second))
                assert provider_id in downloader.engine.peers

                assert _counted(provider, "kad_messages_sent", "addProvider") >= 5
                assert _counted(seed, "kad_message_bytes_received", "addProvider") > 0
                assert _counted(downloader, "kad_messages_sent", "findNode") > 0
                info = downloader.debug_info()
                assert {n["peerId"] for n in info["table"]["nodes"]} >= {provider_id.to_base58()}
                stop.set()

    trio.run(scenario)


def test_a_client_mode_node_refuses_dht_requests_and_stays_out_of_tables(tmp_path: Path) -> None:
    """Without `--nat=extip:` a node starts in client mode (upstream: server mode only once
    AutoNAT finds it reachable): it resets inbound DHT streams, so peers do not admit it."""

    async def scenario() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                stop = trio.Event()
                server = await _started(nursery, stop, tmp_path / "server", *PUBLIC)
                client = await _started(nursery, stop, tmp_path / "client", "--bootstrap-node", server.spr)
                while ID(server.dht.own_id) not in [ID(p) for p in client.dht.table.closest(0)]:
                    await trio.sleep(0.05)
                assert not client.dht.server
                assert client.dht.own_id not in server.dht.table
                reply = await server.dht._request(ID(client.dht.own_id), Message(FIND_NODE, b"x"))
                assert reply is None, "a client answers no DHT request"
                assert await client.dht.provide(b"\x12\x20" + bytes(32)) == 1, "a client still provides"
                assert _counted(client, "kad_messages_sent", "addProvider") == 1
                while not server.dht.providers.get(b"\x12\x20" + bytes(32)):  # no reply: it lands later
                    await trio.sleep(0.05)
                stop.set()

    trio.run(scenario)


async def _chunks(data: bytes):
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


def test_the_advertiser_sweeps_at_start_every_interval_and_once_reachable_again() -> None:
    """Upstream's advertise loop: a sweep at start, then every interval; none while unreachable,
    and one as soon as the node is reachable again; a manifest is never announced twice at once."""
    from codexref.dht.discovery import GATE_POLL_S, Advertiser
    from testbed_toolkit.cid import MANIFEST_CODEC, Cid

    manifests = [Cid.of_data(MANIFEST_CODEC, bytes([i])) for i in range(2)]
    provided: list[tuple[float, bytes]] = []
    reachable = [True]

    class Dht:
        async def provide(self, key: bytes) -> int:
            provided.append((trio.current_time(), key))
            await trio.sleep(30)  # a slow announcement: still in flight when the next one is asked for
            return 1

    async def main() -> None:
        advertiser = Advertiser(Dht(), lambda: manifests, 100, lambda: reachable[0])  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(advertiser.run)
            advertiser.manifest_stored(manifests[0])  # being announced already: not again
            await trio.sleep(150)  # the sweeps at 0 and at 100
            reachable[0] = False
            await trio.sleep(150)  # 200: unreachable, no sweep
            reachable[0] = True
            await trio.sleep(GATE_POLL_S + 1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    times = [round(t) for t, _ in provided]
    assert times[:4] == [0, 0, 100, 100], f"a sweep at start and after one interval: {times}"
    assert len(times) == 6 and times[4] == times[5], f"one sweep once reachable again: {times}"
    assert 300 <= times[4] <= 300 + GATE_POLL_S, "within one poll of becoming reachable"
    assert [k for _, k in provided].count(manifests[0].multihash()) == 3, "never twice at once"


def test_a_peer_whose_admission_probe_timed_out_is_probed_again_at_the_reseed() -> None:
    """On a loaded machine the bootstrap node's answer to the admission probe may time out;
    with an empty table nothing else would bring the node in (seen at 64 nodes on two cores)."""
    from codexref.dht.kademlia import RESEED_INTERVAL_S, KadDHT
    from codexref.metrics import Metrics

    me, bootstrap = ID(b"\x00\x01me"), ID(b"\x00\x09bootstrap")

    class Host:
        def get_id(self) -> ID:
            return me

        def set_stream_handler(self, *_) -> None:
            pass

        def get_network(self) -> SimpleNamespace:
            return SimpleNamespace(connections={bootstrap: ["a connection"]})

    dht = KadDHT(Host(), Metrics(), lambda: [], server=True)  # type: ignore[arg-type]
    answers = [None]  # the first probe times out, later ones are answered

    async def request(peer: ID, message: Message) -> Message | None:
        return answers.pop(0) if answers else Message(FIND_NODE)

    dht._request = request  # type: ignore[method-assign]
    dht.lookup = lambda *_: trio.sleep(0)  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(dht.run)
            dht.peer_connected(bootstrap)
            await trio.sleep(1)
            assert len(dht.table) == 0, "the first probe got no answer"
            await trio.sleep(RESEED_INTERVAL_S)
            assert bootstrap.to_bytes() in dht.table, "probed again at the reseed"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
