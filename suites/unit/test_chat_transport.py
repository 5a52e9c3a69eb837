"""The reference peer's chat transport survives an RPC that does not parse: the peer's stream
ends, the process does not (py-libp2p 0.8.1 lets protobuf's DecodeError escape its handler)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import trio
from coincurve import PrivateKey
from google.protobuf.message import DecodeError
from libp2p.pubsub.pubsub import Pubsub
from statusref.transport import PUBSUB_TOPIC, ChatTransport, GuardedPubsub, sign_message


class FakeStream:
    def __init__(self) -> None:
        self.muxed_conn = SimpleNamespace(peer_id="peer-x")
        self.was_reset = False

    async def reset(self) -> None:
        self.was_reset = True


def test_an_unparsable_rpc_ends_the_peers_stream_not_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unparsable(self, stream) -> None:
        raise DecodeError("Error parsing message with type 'pubsub.pb.RPC'")

    monkeypatch.setattr(Pubsub, "stream_handler", unparsable)
    dead: list[str] = []
    pubsub = GuardedPubsub.__new__(GuardedPubsub)  # the handler alone: no host, no router
    pubsub._handle_dead_peer = dead.append
    stream = FakeStream()
    trio.run(pubsub.stream_handler, stream)
    assert stream.was_reset and dead == ["peer-x"]


def test_bursts_from_two_peers_all_reach_a_busy_reader(tmp_path) -> None:
    """py-libp2p drops a peer's messages beyond 10 a second per topic (gossipsub's spam limit) and,
    while the reader is busy, those beyond 32 waiting (its subscription channel); the fleet node
    forwards every community's messages on one topic, so bursts must pass both."""
    key = PrivateKey()
    received: list[tuple[int, int]] = []

    async def slow_handler(community_id, message, payload, signer) -> None:
        await trio.sleep(0.02)  # storing, signalling ...
        received.append((payload["sender"], payload["n"]))

    async def scenario() -> None:
        receiver = ChatTransport(tmp_path / "r.key", _free_port(), "127.0.0.1")
        senders = [ChatTransport(tmp_path / f"s{i}.key", _free_port(), "127.0.0.1") for i in range(2)]
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(receiver.run, slow_handler)
                receiver.join("community", ["content-topic"])
                for sender in senders:
                    await nursery.start(sender.run, None)
                    await sender.dial(receiver.addresses()[0])
                while not all(s.router.mesh.get(PUBSUB_TOPIC) for s in senders):  # grafted
                    await trio.sleep(0.05)
                for n in range(30):  # within the outbound queue (32 RPCs a peer, as go-libp2p)
                    for i, sender in enumerate(senders):
                        await sender.publish(sign_message(key, "content-topic", {"sender": i, "n": n}))
                while len(received) < 60:
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        assert sorted(received) == [(i, n) for i in range(2) for n in range(30)]

    trio.run(scenario)


def _free_port() -> int:
    """A port the transport can announce (it announces the one it is given, not one it bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
