"""The reference peer's chat transport survives an RPC that does not parse: the peer's stream
ends, the process does not (py-libp2p 0.8.1 lets protobuf's DecodeError escape its handler)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio
from google.protobuf.message import DecodeError
from libp2p.pubsub.pubsub import Pubsub
from statusref.transport import GuardedPubsub


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
