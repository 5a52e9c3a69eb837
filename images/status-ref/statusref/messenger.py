"""Account, communities, chat and archive-link handling: what `wakuext_*` calls reach.

One account per data dir. The messenger runs between login and logout under its own cancel
scope, so Logout stops the chat transport, archive loops and downloads at once, and the next
login resumes them (unimported archives included) from the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import trio
from coincurve import PrivateKey

from statusref.archive import ArchiveSettings, MemberDownload, OwnerArchiver, import_archives
from statusref.protobufs import WakuMessage
from statusref.storage import Storage
from statusref.store import Store
from statusref.transport import ChatTransport, hexkey, keccak256, open_message, sign_message

log = logging.getLogger("messenger")
DESCRIPTION_EVERY_S = 2  # the owner republishes the community description (and its archive link)
FETCH_COMMUNITY_S = 15


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def general_chat_id(community_id: str) -> str:
    return f"{community_id}-general"


class Messenger:
    def __init__(
        self,
        data_dir: Path,
        storage: Storage,
        emit: Callable[[str, dict], None],
        chat_port: int,
        announce_ip: str,
    ) -> None:
        self.data_dir = data_dir
        self.storage = storage
        self.emit = emit
        self.chat_port = chat_port
        self.announce_ip = announce_ip
        self.store: Store | None = None  # type: ignore[assignment]
        self.key: PrivateKey | None = None
        self.transport: ChatTransport | None = None
        self.scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None
        self.archive_settings = ArchiveSettings()
        self.import_ready_at = 0.0
        self.downloads: dict[str, MemberDownload] = {}
        self.storage_running: tuple[trio.CancelScope, trio.Event] | None = None
        self.owner_loops: dict[str, trio.CancelScope] = {}

    # -- accounts --------------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self.scope is not None

    def _open_store(self) -> Store:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return Store(self.data_dir / "status.db")

    def create_account(self, request: dict) -> dict:
        store = self._open_store()
        if store.get("key"):
            raise RpcError(-32000, "an account already exists in this data dir; use LoginAccount")
        key = PrivateKey()
        store.put("key", key.to_hex())
        store.put("keyUid", "0x" + keccak256(key.public_key.format(compressed=False)).hex())
        store.put("displayName", request.get("displayName", ""))
        store.put("password", hashlib.sha256(request.get("password", "").encode()).hexdigest())
        for option, name in (
            ("messageArchiveInterval", "interval_s"),
            ("importInitialDelay", "import_initial_delay_s"),
        ):
            if option in request:
                store.put(name, float(request[option]))
        # status-go: LogosStorageConfig.Enabled, and BootstrapNodes = [logosStorageConfigBootstrapNode]
        store.put("storageEnabled", bool(request.get("logosStorageConfigEnabled", False)))
        if bootstrap := request.get("logosStorageConfigBootstrapNode"):
            store.put("storageOverrides", {"NodeConfig.BootstrapNodes": json.dumps([bootstrap])})
        self.store = store
        return self._account()

    def check_login(self, request: dict) -> None:
        store = self._open_store()
        if request.get("keyUid") != store.get("keyUid"):
            raise RpcError(-32000, f"no account {request.get('keyUid')!r} in this data dir")
        if hashlib.sha256(request.get("password", "").encode()).hexdigest() != store.get("password"):
            raise RpcError(-32000, "wrong password")
        self.store = store

    def _account(self) -> dict:
        return {"keyUid": self.store.get("keyUid"), "name": self.store.get("displayName")}

    async def login(self, system: trio.Nursery) -> dict:
        """Start the messenger under its own cancel scope and announce `node.login`."""
        store = self.store
        self.key = PrivateKey.from_hex(store.get("key"))
        self.archive_settings = ArchiveSettings(
            interval_s=store.get("interval_s", ArchiveSettings.interval_s),
            import_initial_delay_s=store.get(
                "import_initial_delay_s", ArchiveSettings.import_initial_delay_s
            ),
            **_settings_from_env(),
        )
        self.import_ready_at = trio.current_time() + self.archive_settings.import_initial_delay_s
        self.transport = ChatTransport(self.data_dir / "chat-key", self.chat_port, self.announce_ip)
        self.scope = await system.start(self._run)
        account = self._account()
        self.emit("node.login", {"keyUid": account["keyUid"], "account": account})
        return account

    async def logout(self) -> None:
        await self.stop_storage()  # first: its peers see it go, as the chat peers do
        if self.transport:
            await self.transport.close()
        if self.scope:
            self.scope.cancel()
        self.scope = self.nursery = self.transport = self.storage_running = None
        self.downloads.clear()
        self.owner_loops.clear()

    async def _run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if self.store.get("storageEnabled"):
                    await self.start_storage()
                await nursery.start(self.transport.run, self.on_message)
                for address in self.store.get("chatPeers", []):
                    nursery.start_soon(self._redial, address)
                for row in self.store.communities():
                    self.transport.join(row["id"], self.community_topics(row["id"]))
                    if row["private_key"]:
                        self._start_owner_loop(row["id"])
                    elif row["joined"] and row["history_archive_support"]:
                        nursery.start_soon(import_archives, self, row["id"])  # resume unimported
                nursery.start_soon(self._republish_descriptions)
                task_status.started(scope)

    # -- storage ----------------------------------------------------------------------------------
    async def _storage_task(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        stopped = trio.Event()
        with trio.CancelScope() as scope:
            self.storage_running = (scope, stopped)
            try:
                await self.storage.run(task_status=task_status)
            finally:
                stopped.set()

    async def start_storage(self) -> None:
        """(Re)start the storage node with the stored overrides, as status-go's SetOnline."""
        await self.stop_storage()
        self.storage.configure(self.store.get("storageOverrides", {}))
        await self.nursery.start(self._storage_task)

    async def stop_storage(self) -> None:
        if self.storage_running:
            scope, stopped = self.storage_running
            await self.storage.stop()
            scope.cancel()
            await stopped.wait()  # its ports are free again
            self.storage_running = None

    async def enable_storage_archives(self, overrides: dict | None) -> None:
        """wakuext_enableLogosStorageCommunityHistoryArchiveProtocol: the overrides (status-go's
        `NodeConfig.<Field>` strings) merged over the stored ones and checked before anything is
        kept, the storage node (re)started with them, archives on for every community."""
        given = {field: str(value) for field, value in (overrides or {}).items()}
        merged = {**self.store.get("storageOverrides", {}), **given}
        self.storage.configure(merged)  # raises on a bad override: nothing stored, nothing restarted
        self.store.put("storageOverrides", merged)
        self.store.put("storageEnabled", True)
        await self.start_storage()
        self.set_archive_support(True)
        self.emit("community.historyArchivesProtocolEnabled", {})

    async def _redial(self, address: str) -> None:
        try:
            await self.transport.dial(address)
        except Exception as exc:  # a peer that is gone now; it may dial us later
            log.info("redial %s failed: %s", address, exc)

    # -- chat transport wiring --------------------------------------------------------------------
    def listen_addresses(self) -> list[str]:
        return self._require_transport().addresses()

    async def dial_peer(self, address: str) -> bool:
        await self._require_transport().dial(address)
        peers = self.store.get("chatPeers", [])
        if address not in peers:
            self.store.put("chatPeers", [*peers, address])
        return True

    def chat_peers(self) -> list[str]:
        return self._require_transport().peers()

    def _require_transport(self) -> ChatTransport:
        if not self.transport:
            raise RpcError(-32601, "the method wakuext does not exist/is not available")
        return self.transport

    # -- communities ------------------------------------------------------------------------------
    def community_topics(self, community_id: str) -> list[str]:
        return [community_id, general_chat_id(community_id)]

    def _description(self, community_id: str) -> dict:
        return json.loads(self.store.community(community_id)["description"])

    async def create_community(self, request: dict) -> dict:
        community_key = PrivateKey()
        community_id = hexkey(community_key.public_key)
        description = {
            "id": community_id,
            "name": request.get("name", ""),
            "description": request.get("description", ""),
            "color": request.get("color", ""),
            "membership": request.get("membership", 3),
            "members": [hexkey(self.key.public_key)],
            "chats": [{"id": general_chat_id(community_id), "name": "general"}],
        }
        self.store.save_community(community_id, description, private_key=community_key.to_hex())
        self.store.set_joined(community_id)
        self.store.set_history_archive_support(
            community_id, request.get("historyArchiveSupportEnabled", True)
        )
        self.transport.join(community_id, self.community_topics(community_id))
        if request.get("historyArchiveSupportEnabled", True):
            self._start_owner_loop(community_id)
        return {"communities": [self._community_view(community_id)], "chats": description["chats"]}

    def _community_view(self, community_id: str) -> dict:
        row = self.store.community(community_id)
        return {
            **self._description(community_id),
            "joined": bool(row["joined"]),
            "isControlNode": bool(row["private_key"]),
        }

    def joined_communities(self) -> list[dict]:
        return [self._community_view(row["id"]) for row in self.store.communities() if row["joined"]]

    def _start_owner_loop(self, community_id: str) -> None:
        if community_id in self.owner_loops or not self.nursery:
            return
        scope = trio.CancelScope()
        self.owner_loops[community_id] = scope

        async def run() -> None:
            with scope:
                await OwnerArchiver(self, community_id).loop()

        self.nursery.start_soon(run)

    async def fetch_community(self, request: dict) -> dict:
        community_id = request["communityKey"]
        self.transport.join(community_id, self.community_topics(community_id))
        with trio.move_on_after(FETCH_COMMUNITY_S if request.get("waitForResponse", True) else 0):
            while not self.store.community(community_id):
                await trio.sleep(0.2)
        if not self.store.community(community_id):
            raise RpcError(
                -32000, f"community {community_id} not found (no description within {FETCH_COMMUNITY_S} s)"
            )
        return self._community_view(community_id)

    async def request_to_join(self, request: dict) -> dict:
        community_id = request["communityId"]
        if not self.store.community(community_id):
            raise RpcError(-32000, f"unknown community {community_id}: fetch it first")
        request_id = "0x" + secrets.token_hex(32)
        me = hexkey(self.key.public_key)
        self.store.save_request(request_id, community_id, me, "pending")
        await self._publish(
            community_id, {"type": "REQUEST_TO_JOIN", "id": request_id, "communityId": community_id}
        )
        return {
            "requestsToJoinCommunity": [
                {"id": request_id, "communityId": community_id, "publicKey": me, "state": 1}
            ]
        }

    async def accept_request(self, request: dict) -> dict:
        row = self.store.request(request["id"])
        if not row:
            raise RpcError(-32000, f"request to join {request['id']} not found")
        community_id = row["community_id"]
        community = self.store.community(community_id)
        if not community or not community["private_key"]:
            raise RpcError(-32000, "only the control node accepts requests to join")
        description = self._description(community_id)
        if row["public_key"] not in description["members"]:
            description["members"].append(row["public_key"])
        self.store.save_community(community_id, description)
        self.store.save_request(row["id"], community_id, row["public_key"], "accepted")
        info = self.store.archive_info(community_id)
        response = {
            "type": "REQUEST_TO_JOIN_RESPONSE", "id": row["id"], "communityId": community_id,
            "publicKey": row["public_key"], "accepted": True, "community": description,
            "archiveLink": info["last_archive_link"], "archiveLinkClock": info["archive_link_clock"],
        }  # fmt: skip
        await self._publish(community_id, response, PrivateKey.from_hex(community["private_key"]))
        return {"communities": [self._community_view(community_id)]}

    async def _republish_descriptions(self) -> None:
        """The owner's periodic description; it carries the current archive link, so a member who
        was offline when the link message went out still learns it (the role of the CD clock)."""
        while True:
            for row in self.store.communities():
                if row["private_key"]:
                    info = self.store.archive_info(row["id"])
                    payload = {
                        "type": "COMMUNITY_DESCRIPTION",
                        "community": self._description(row["id"]),
                        "archiveLink": info["last_archive_link"],
                        "archiveLinkClock": info["archive_link_clock"],
                    }
                    await self._publish(row["id"], payload, PrivateKey.from_hex(row["private_key"]))
            await trio.sleep(DESCRIPTION_EVERY_S)

    # -- messages ---------------------------------------------------------------------------------
    async def send_chat_message(self, request: dict) -> dict:
        chat_id = request["chatId"]
        community_id = chat_id.removesuffix("-general")
        if not self.store.community(community_id):
            raise RpcError(-32000, f"unknown chat {chat_id}")
        now_ms = int(time.time() * 1000)
        message = {
            "id": "0x" + secrets.token_hex(32), "chatId": chat_id, "communityId": community_id,
            "text": request.get("text", ""), "contentType": request.get("contentType", 1),
            "clock": now_ms, "timestamp": now_ms, "from": hexkey(self.key.public_key),
        }  # fmt: skip
        await self._publish(community_id, {"type": "CHAT_MESSAGE", "message": message}, topic=chat_id)
        return {"messages": [message]}

    async def _publish(
        self, community_id: str, payload: dict, key: PrivateKey | None = None, topic: str | None = None
    ) -> None:
        message = sign_message(key or self.key, topic or community_id, payload)
        await self.on_message(community_id, message, payload, hexkey((key or self.key).public_key))
        await self.transport.publish(message)

    async def publish_archive_link(
        self, community_id: str, link: str, clock: int, key: PrivateKey | None = None
    ) -> None:
        row = self.store.community(community_id)
        signer = key or (PrivateKey.from_hex(row["private_key"]) if row and row["private_key"] else self.key)
        payload = {"type": "COMMUNITY_MESSAGE_ARCHIVE_LINK", "clock": clock, "archive_link": link}
        await self._publish(community_id, payload, signer)

    async def on_message(self, community_id: str, message: WakuMessage, payload: dict, signer: str) -> None:
        """Everything that arrives on a community topic (our own publications included)."""
        kind = payload.get("type")
        community = self.store.community(community_id)
        if kind == "CHAT_MESSAGE":
            self.store.save_waku_message(
                message.hash.hex(), community_id, message.topic.decode(), message.timestamp, message.encode()
            )
            await self._deliver(payload["message"], signer, "live")
        elif kind == "COMMUNITY_DESCRIPTION" and signer == community_id:
            if not community or not community["private_key"]:
                self.store.save_community(community_id, payload["community"])
            await self.on_archive_link(
                community_id, payload["archiveLink"], payload["archiveLinkClock"], signer, "description"
            )
        elif kind == "REQUEST_TO_JOIN" and community and community["private_key"]:
            if not self.store.request(payload["id"]):
                self.store.save_request(payload["id"], community_id, signer, "pending")
        elif kind == "REQUEST_TO_JOIN_RESPONSE" and signer == community_id:
            if payload["publicKey"] == hexkey(self.key.public_key) and payload["accepted"]:
                self.store.save_community(community_id, payload["community"])
                self.store.set_joined(community_id)
                await self.on_archive_link(
                    community_id, payload["archiveLink"], payload["archiveLinkClock"], signer, "join response"
                )
        elif kind == "COMMUNITY_MESSAGE_ARCHIVE_LINK":
            await self.on_archive_link(
                community_id, payload["archive_link"], payload["clock"], signer, "link message"
            )

    async def _deliver(self, message: dict, signer: str, source: str) -> None:
        if message.get("from") != signer:
            log.warning("dropped a chat message whose sender does not match its signature")
            return
        community = self.store.community(message["communityId"])
        if community and community["joined"] and self.store.save_user_message(message, source):
            self.emit("messages.new", {"messages": [message]})

    async def handle_archived(self, community_id: str, waku: WakuMessage) -> None:
        """A message from an imported archive takes the same path as a live one."""
        try:
            payload, signer = open_message(waku)
        except ValueError as exc:
            log.warning("archived message skipped: %s", exc)
            return
        if payload.get("type") == "CHAT_MESSAGE":
            await self._deliver(payload["message"], signer, "archive")

    # -- archive links ------------------------------------------------------------------------------
    async def on_archive_link(self, community_id: str, link: str, clock: int, signer: str, via: str) -> None:
        """status-go's gates: from the control node, to a joined non-owner with support on, clock
        not older, link not the last one seen; a newer link cancels the running download.
        Every refusal of a link message is logged with its reason (the description repeats the
        current link every few seconds, so its refusals are not)."""
        reason = self._refuse_link(community_id, link, clock, signer)
        if reason:
            if via == "link message":
                log.info("%s: ignored archive link %s (clock %d): %s", community_id, link, clock, reason)
            return
        running = self.downloads.get(community_id)
        if running:
            running.cancel_scope.cancel()
            log.info("%s: cancelled the download of %s for a newer link", community_id, running.link)
        log.info("%s: archive link %s (clock %d) via %s", community_id, link, clock, via)
        # As status-go: the clock is taken at once (an older link arriving mid-download is refused);
        # the link itself counts as seen once its download is done.
        self.store.update_archive_info(community_id, archive_link_clock=clock)
        download = MemberDownload(self, community_id, link)
        self.downloads[community_id] = download
        self.nursery.start_soon(download.run)

    def _refuse_link(self, community_id: str, link: str, clock: int, signer: str) -> str | None:
        community = self.store.community(community_id)
        if not link or not community:
            return "no link or unknown community"
        if community["private_key"]:
            return "this peer is the control node"
        if signer != community_id:
            return f"signed by {signer}, not by the control node"
        if not community["joined"] or not community["history_archive_support"]:
            return "not joined, or history archives disabled"
        info = self.store.archive_info(community_id)
        if clock < info["archive_link_clock"]:
            return f"clock older than {info['archive_link_clock']}"
        running = self.downloads.get(community_id)
        if link in (info["last_archive_link"], running and running.link):
            return "the link already seen"
        return None

    async def has_community_archive(self, community_id: str) -> bool:
        """As status-go: a last seen link, and its index held by the storage node."""
        link = self.store.archive_info(community_id)["last_archive_link"]
        return bool(link) and await self.storage.has_cid(link)

    def set_archive_support(self, enabled: bool) -> None:
        for row in self.store.communities():
            self.store.set_history_archive_support(row["id"], enabled)
            if row["private_key"] and enabled:
                self._start_owner_loop(row["id"])
            elif row["private_key"] and (scope := self.owner_loops.pop(row["id"], None)):
                scope.cancel()


def _settings_from_env() -> dict:
    """Knobs status-go has as constants, tunable here so tests need not wait minutes."""
    names = {
        "STATUS_DOWNLOAD_TIMEOUT_S": "download_timeout_s",
        "STATUS_ARCHIVE_POLL_TIMEOUT_S": "polling_timeout_s",
        "STATUS_MAX_ARCHIVE_BYTES": "max_archive_bytes",
        "STATUS_IMPORT_RATE_PER_S": "import_rate_per_s",
    }
    return {
        field: type(getattr(ArchiveSettings, field))(os.environ[env])
        for env, field in names.items()
        if env in os.environ
    }
