"""Chat transport stand-in for Waku: gossipsub (py-libp2p) among the status peers.

One pubsub topic per community; every payload is a signed WakuMessage protobuf, so the owner can
archive exactly what travelled. Only small control and chat messages travel here; archives and
indexes travel over Codex only (as with Waku + Codex in status-go).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import multiaddr
import trio
from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from testbed_toolkit import identity, p2p

from statusref.protobufs import WakuMessage

log = logging.getLogger("transport")
Handler = Callable[[str, WakuMessage, dict, str], Awaitable[None]]  # community, message, payload, signer


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def hexkey(key: PublicKey) -> str:
    return "0x" + key.format(compressed=True).hex()


def sign_message(key: PrivateKey, topic: str, payload: dict) -> WakuMessage:
    body = json.dumps(payload, sort_keys=True).encode()
    signature = key.sign_recoverable(body, hasher=keccak256)
    stamp = time.time_ns()
    digest = keccak256(body + stamp.to_bytes(8, "big"))
    return WakuMessage(sig=signature, timestamp=stamp, topic=topic.encode(), payload=body, hash=digest)


def open_message(message: WakuMessage) -> tuple[dict, str]:
    """The payload and the signer's compressed public key (0x-hex); raises ValueError when forged."""
    try:
        signer = PublicKey.from_signature_and_message(message.sig, message.payload, hasher=keccak256)
        return json.loads(message.payload), hexkey(signer)
    except Exception as exc:
        raise ValueError(f"unreadable or unsigned message: {exc}") from exc


def pubsub_topic(community_id: str) -> str:
    return f"/waku/2/status-ref/{community_id}"


class ChatTransport:
    def __init__(self, key_file: Path, listen_port: int, announce_ip: str) -> None:
        self.host = p2p.build_host(
            identity.load_or_create(key_file), [f"/ip4/{announce_ip}/tcp/{listen_port}"]
        )
        self.listen = multiaddr.Multiaddr(f"/ip4/0.0.0.0/tcp/{listen_port}")
        # Recent messages stay in the gossip cache for 3 heartbeats of 1 s: a peer that subscribes
        # later gets them (as from a Waku store with a short retention); older history only comes
        # from archives.
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            gossip_window=2,
            gossip_history=3,
        )
        self.pubsub = Pubsub(self.host, self.router)
        self.subscribed: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._handler: Handler | None = None

    async def run(self, handler: Handler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._handler = handler
        async with (
            self.host.run(listen_addrs=[self.listen]),
            background_trio_service(self.pubsub),
            background_trio_service(self.router),
        ):
            await self.pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def addresses(self) -> list[str]:
        peer = self.host.get_id().to_base58()
        return [
            f"{addr}/p2p/{peer}" if "/p2p/" not in str(addr) else str(addr) for addr in self.host.get_addrs()
        ]

    async def dial(self, address: str) -> None:
        await self.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(address)))

    def peers(self) -> list[str]:
        return [peer.to_base58() for peer in self.host.get_network().connections]

    async def join(self, community_id: str) -> None:
        """Subscribe to a community's topic and hand every message to the handler."""
        if community_id in self.subscribed or self._nursery is None:
            return
        self.subscribed.add(community_id)
        subscription = await self.pubsub.subscribe(pubsub_topic(community_id))

        async def pump() -> None:
            while True:
                received = await subscription.get()
                try:
                    message = WakuMessage.decode(received.data)
                    payload, signer = open_message(message)
                except ValueError as exc:
                    log.warning("dropped a message on %s: %s", community_id, exc)
                    continue
                await self._handler(community_id, message, payload, signer)  # type: ignore[misc]

        self._nursery.start_soon(pump)

    async def publish(self, community_id: str, message: WakuMessage) -> None:
        await self.pubsub.publish(pubsub_topic(community_id), message.encode())
