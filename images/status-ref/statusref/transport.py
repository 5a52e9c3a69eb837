"""Chat transport stand-in for Waku relay: gossipsub (py-libp2p) among the status peers and the
testbed's Waku fleet node (statusref/fleet.py).

As in Waku relay, every peer subscribes to one shared pubsub topic and tells communities apart by
each message's content topic (a community's id, or one of its chats): a fleet node that relays
the topic relays every community, so peers behind NATs that cannot reach each other chat through
it. Every payload is a signed WakuMessage protobuf, so the owner can archive exactly what
travelled. Only small control and chat messages travel here; archives and indexes travel over
storage only (as with Waku + Logos Storage in status-go).
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
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
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


INBOX_SIZE = 1024


class GuardedPubsub(Pubsub):
    """py-libp2p's pubsub with two of its defects worked around.

    An RPC that does not parse ends that peer's stream, not this process: py-libp2p 0.8.1 catches
    its own read errors there but not protobuf's DecodeError, which then unwinds through the
    swarm into the status peer's nursery (seen: every member of a 12-member community died at
    once while the fleet relayed 900 kB messages).

    Messages of subscribed topics wait in `inbox`, INBOX_SIZE of them, as go-waku's relay
    subscription buffers them (`DefaultRelaySubscriptionBufferSize`, waku/v2/protocol/relay):
    py-libp2p's subscription holds 32 and drops the rest while its reader is busy."""

    def __init__(self, host: IHost, router: GossipSub) -> None:
        super().__init__(host, router)
        self._inbox_send, self.inbox = trio.open_memory_channel[rpc_pb2.Message](INBOX_SIZE)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            try:
                self._inbox_send.send_nowait(publish_message)
            except trio.WouldBlock:
                log.warning("dropped a message: %d are waiting to be handled", INBOX_SIZE)

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except DecodeError as error:
            peer = stream.muxed_conn.peer_id
            log.warning("dropped %s's pubsub stream: an RPC that does not parse (%s)", peer, error)
            await stream.reset()
            self._handle_dead_peer(peer)


PUBSUB_TOPIC = "/waku/2/status-ref/proto"  # the one topic every peer and fleet node relays
PEER_DEGREE = (6, 4, 12)
CLOSE_TIMEOUT_S = 5  # gossipsub's D, D_low, D_high for a peer (libp2p's defaults)


class ChatTransport:
    def __init__(
        self, key_file: Path, listen_port: int, announce_ip: str, degree: tuple[int, int, int] = PEER_DEGREE
    ) -> None:
        self.host = p2p.build_host(
            identity.load_or_create(key_file), [f"/ip4/{announce_ip}/tcp/{listen_port}"]
        )
        self.listen = multiaddr.Multiaddr(f"/ip4/0.0.0.0/tcp/{listen_port}")
        # Recent messages stay in the gossip cache for 3 heartbeats of 1 s: a peer that connects
        # later (at its next login) gets them (as from a Waku store with a short retention); older
        # history only comes from archives.
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=degree[0],
            degree_low=degree[1],
            degree_high=degree[2],
            heartbeat_interval=1,
            gossip_window=2,
            gossip_history=3,
            # py-libp2p's own spam limit (10 messages a second per peer and topic) is not Waku
            # relay's: the fleet node forwards every community's messages on one shared topic,
            # and a burst above it was dropped without a trace (a member missed a link message)
            spam_protection_enabled=False,
        )
        self.pubsub = GuardedPubsub(self.host, self.router)
        self.communities: dict[str, str] = {}  # content topic -> the joined community it belongs to
        self._handler: Handler | None = None

    async def run(self, handler: Handler | None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Relay the shared topic; hand each message of a joined community to `handler` (a fleet
        node has none: it only relays)."""
        self._handler = handler
        async with (
            self.host.run(listen_addrs=[self.listen]),
            background_trio_service(self.pubsub),
            background_trio_service(self.router),
        ):
            await self.pubsub.wait_until_ready()
            await self.pubsub.subscribe(PUBSUB_TOPIC)
            task_status.started()
            async for received in self.pubsub.inbox:
                if self._handler is not None:
                    await self._dispatch(received.data)

    async def _dispatch(self, data: bytes) -> None:
        try:
            message = WakuMessage.decode(data)
        except ValueError as exc:
            log.warning("dropped an unreadable message: %s", exc)
            return
        community_id = self.communities.get(message.topic.decode(errors="replace"))
        if community_id is None:
            return  # a community this peer has not joined or fetched
        try:
            payload, signer = open_message(message)
        except ValueError as exc:
            log.warning("dropped a message on %s: %s", community_id, exc)
            return
        await self._handler(community_id, message, payload, signer)  # type: ignore[misc]

    async def close(self) -> None:
        """Close every connection and the listener before the transport's tasks are cancelled
        (py-libp2p leaves both open when only cancelled; see codexref's Node.close)."""
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await self.host.get_network().close()

    def addresses(self) -> list[str]:
        peer = self.host.get_id().to_base58()
        return [
            f"{addr}/p2p/{peer}" if "/p2p/" not in str(addr) else str(addr) for addr in self.host.get_addrs()
        ]

    async def dial(self, address: str) -> None:
        await self.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(address)))

    def peers(self) -> list[str]:
        return [peer.to_base58() for peer in self.host.get_network().connections]

    def join(self, community_id: str, content_topics: list[str]) -> None:
        """From now on, hand the community's messages (those on its content topics) to the handler."""
        for topic in content_topics:
            self.communities[topic] = community_id

    async def publish(self, message: WakuMessage) -> None:
        await self.pubsub.publish(PUBSUB_TOPIC, message.encode())
