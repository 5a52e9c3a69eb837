"""BlockExchange agent for Locust: a trio process that speaks /codex/blockexc/1.0.0 to nodes.

Locust monkey-patches with gevent, which removes `select.epoll`, so trio (and py-libp2p) cannot
run inside a Locust process. This agent runs beside it with its own libp2p identity and answers
newline-delimited JSON requests on a loopback port (printed as `{"port": N}` at start):

    {"op": "want_have", "peer": id, "addrs": [...], "tree": cid, "index": i}
        -> {"ok": true, "ms": presence latency, "have": bool}
    {"op": "want_block", "peer": id, "addrs": [...], "tree": cid, "index": i}
        -> {"ok": true, "ms": delivery latency, "bytes": n}   (data hash and Merkle proof verified)

The Locust process starts it (suites/load/locustfile.py) as a script, with testbed_toolkit
(images/pyruntime) on PYTHONPATH: the harness sets that on the host, the loadgen image has it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from testbed_toolkit import identity, merkle, p2p
from testbed_toolkit.blockexc import PROTOCOL_ID
from testbed_toolkit.blockexc.framing import FrameReader
from testbed_toolkit.blockexc.messages import (
    PRESENCE_HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    BlockAddress,
    Message,
    WantEntry,
    Wantlist,
)
from testbed_toolkit.cid import Cid

REQUEST_TIMEOUT_S = 30


class Agent:
    def __init__(self) -> None:
        self.host = p2p.build_host(identity.load_or_create(Path(tempfile.mkdtemp()) / "key"), [])
        self.streams: dict[str, object] = {}
        self.connecting = trio.Lock()  # one dial and one stream per node, one writer at a time
        self.waiting: dict[tuple[str, BlockAddress], list[trio.MemorySendChannel]] = {}
        self.host.set_stream_handler(TProtocol(PROTOCOL_ID), self.inbound)

    async def inbound(self, stream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        reader = FrameReader(stream)
        while (body := await reader.read()) is not None:
            message = Message.decode(body)
            for presence in message.block_presences:
                await self._deliver(peer, presence.address, ("presence", presence.type == PRESENCE_HAVE, 0))
            for delivery in message.payload:
                await self._deliver(
                    peer, delivery.address, ("block", self._verified(delivery), len(delivery.data))
                )

    async def _deliver(self, peer: str, address: BlockAddress, event: tuple) -> None:
        for channel in self.waiting.pop((peer, address), []):
            await channel.send(event)

    @staticmethod
    def _verified(delivery) -> bool:
        cid = Cid.from_bytes(delivery.cid)
        proof = merkle.Proof.decode(delivery.proof)
        tree = Cid.from_bytes(delivery.address.tree_cid)
        return hashlib.sha256(delivery.data).digest() == cid.digest and merkle.verify(
            proof, cid.digest, tree.digest
        )

    async def _send(self, peer: str, addrs: list[str], message: Message) -> None:
        async with self.connecting:
            if peer not in self.streams:
                await self.host.connect(p2p.peer_info(peer, addrs))
                self.streams[peer] = await self.host.new_stream(
                    ID.from_base58(peer), [TProtocol(PROTOCOL_ID)]
                )
            await self.streams[peer].write(message.framed())  # type: ignore[attr-defined]

    async def request(self, req: dict) -> dict:
        want = WANT_HAVE if req["op"] == "want_have" else WANT_BLOCK
        address = BlockAddress.of_leaf(Cid.parse(req["tree"]).to_bytes(), int(req["index"]))
        send, receive = trio.open_memory_channel(1)
        self.waiting.setdefault((req["peer"], address), []).append(send)
        message = Message(wantlist=Wantlist((WantEntry(address, want, send_dont_have=True),)))
        start = time.perf_counter()
        await self._send(req["peer"], req["addrs"], message)
        with trio.fail_after(REQUEST_TIMEOUT_S):
            kind, ok, size = await receive.receive()
        ms = (time.perf_counter() - start) * 1000
        if want == WANT_HAVE:
            return {"ok": kind == "presence", "ms": ms, "have": ok}
        return {"ok": kind == "block" and ok, "ms": ms, "bytes": size}

    async def serve_client(self, client: trio.SocketStream) -> None:
        buffer = b""
        async with client:
            async for chunk in client:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        answer = await self.request(json.loads(line))
                    except Exception as exc:  # every failure goes back to the Locust user, which counts it
                        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    await client.send_all(json.dumps(answer).encode() + b"\n")


async def main() -> None:
    agent = Agent()
    async with agent.host.run([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/0")]), trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, agent.serve_client, 0, host="127.0.0.1"))
        print(json.dumps({"port": listeners[0].socket.getsockname()[1]}), flush=True)


if __name__ == "__main__":
    trio.run(main)
