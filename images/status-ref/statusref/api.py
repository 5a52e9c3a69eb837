"""The status-backend HTTP surface: POST /health, POST /statusgo/<Fn>, POST /statusgo/CallRPC
(JSON-RPC 2.0, `wakuext_*` only after login: -32601 before), and `ws /signals` streaming
{"type", "event"} envelopes to every connected client."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from statusref.messenger import Messenger, RpcError
from statusref.storage import StorageError

log = logging.getLogger("api")
VERSION = "statusref-0.1"


class SignalHub:
    """Fan-out of signals to every /signals client (each gets its own buffer)."""

    def __init__(self) -> None:
        self.clients: set[trio.MemorySendChannel] = set()

    def emit(self, kind: str, event: dict) -> None:
        log.info("signal %s %s", kind, json.dumps(event)[:200])
        envelope = json.dumps({"type": kind, "event": event})
        for channel in list(self.clients):
            try:
                channel.send_nowait(envelope)
            except (trio.WouldBlock, trio.ClosedResourceError):
                self.clients.discard(channel)


def build_app(messenger: Messenger, hub: SignalHub, system: trio.Nursery) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"version": VERSION})

    async def initialize(body: dict) -> dict:
        if body.get("dataDir"):
            messenger.data_dir = Path(body["dataDir"])
        return {"error": ""}

    async def create_account(body: dict) -> dict:
        if body.get("rootDataDir"):
            messenger.data_dir = Path(body["rootDataDir"])
        messenger.create_account(body)
        await messenger.login(system)
        return {"error": ""}

    async def login(body: dict) -> dict:
        messenger.check_login(body)
        await messenger.login(system)
        return {"error": ""}

    async def logout(body: dict) -> dict:
        await messenger.logout()  # idempotent, as status-backend's
        return {"error": ""}

    async def node_config(body: dict) -> dict:
        settings = messenger.archive_settings
        return {
            "MessageArchiveInterval": settings.interval_s,
            "ImportInitialDelay": settings.import_initial_delay_s,
        }

    functions: dict[str, Callable[[dict], Awaitable[dict]]] = {
        "InitializeApplication": initialize,
        "CreateAccountAndLogin": create_account,
        "LoginAccount": login,
        "Logout": logout,
        "GetNodeConfig": node_config,
    }

    async def statusgo(request: Request) -> JSONResponse:
        name = request.path_params["fn"]
        raw = await request.body()
        if name == "CallRPC":
            return JSONResponse(await call_rpc(raw))
        if name not in functions:
            return JSONResponse({"error": f"{name}: not implemented by the reference peer"}, status_code=501)
        try:
            body = json.loads(raw or b"{}")
            return JSONResponse(await functions[name](body))
        except (RpcError, ValueError, KeyError) as exc:
            return JSONResponse({"error": str(exc)})

    async def call_rpc(raw: bytes) -> dict:
        try:
            request = json.loads(raw)
        except ValueError:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        request_id = request.get("id")
        try:
            result = await dispatch(messenger, request.get("method", ""), request.get("params") or [])
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": exc.code, "message": str(exc)}}
        except StorageError as exc:  # the storage node refused, or is not running
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": str(exc)}}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32602, "message": f"invalid params: {exc}"},
            }
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def signals(websocket: WebSocket) -> None:
        await websocket.accept()
        send, receive = trio.open_memory_channel(10_000)
        hub.clients.add(send)
        try:
            async with receive:
                async for envelope in receive:
                    await websocket.send_text(envelope)
        except WebSocketDisconnect:
            pass
        finally:
            hub.clients.discard(send)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET", "POST"]),
            Route("/statusgo/{fn}", statusgo, methods=["POST"]),
            WebSocketRoute("/signals", signals),
        ]
    )


async def dispatch(messenger: Messenger, method: str, params: list):
    """JSON-RPC methods; `wakuext_*` need a logged-in messenger, as in status-go."""
    if not method.startswith(("wakuext_", "testbed_")) or method not in RPC:
        raise RpcError(-32601, f"the method {method} does not exist/is not available")
    if not messenger.logged_in:
        raise RpcError(-32601, f"the method {method} does not exist/is not available")
    return await RPC[method](messenger, *params)


async def _interval(messenger: Messenger, seconds) -> None:
    messenger.archive_settings.interval_s = float(seconds)
    messenger.store.put("interval_s", float(seconds))


async def _debug(messenger: Messenger) -> dict:
    """status-go's LogosStorageDebugInfo: the storage node's id, addrs, spr, announceAddresses, table."""
    info = await messenger.storage.debug()
    return {key: info.get(key) for key in ("id", "addrs", "spr", "announceAddresses", "table")}


async def _connect(messenger: Messenger, peer_id: str, addrs: list[str]) -> None:
    await messenger.storage.connect(peer_id, addrs)


async def _publish_link(messenger: Messenger, community_id: str, link: str, clock: int) -> None:
    """Testbed fault injection: a link message signed by the community key when this peer owns
    the community, by the account key otherwise (a forged link, which members must ignore)."""
    await messenger.publish_archive_link(community_id, link, int(clock))


async def _value(value):
    return value


RPC: dict[str, Callable[..., Awaitable]] = {
    "wakuext_startMessenger": lambda m: _value({}),
    "wakuext_chats": lambda m: _value([]),
    "wakuext_createCommunity": lambda m, request: m.create_community(request),
    "wakuext_fetchCommunity": lambda m, request: m.fetch_community(request),
    "wakuext_joinedCommunities": lambda m: _value(m.joined_communities()),
    "wakuext_requestToJoinCommunity": lambda m, request: m.request_to_join(request),
    "wakuext_acceptRequestToJoinCommunity": lambda m, request: m.accept_request(request),
    "wakuext_sendChatMessage": lambda m, request: m.send_chat_message(request),
    "wakuext_chatMessages": lambda m, chat_id, cursor="", limit=100: _value(
        {"messages": m.store.chat_messages(chat_id, int(limit)), "cursor": ""}
    ),
    "wakuext_updateMessageArchiveInterval": _interval,
    "wakuext_getMessageArchiveInterval": lambda m: _value(int(m.archive_settings.interval_s * 1e9)),
    "wakuext_hasCommunityArchive": lambda m, community_id: m.has_community_archive(community_id),
    "wakuext_getDownloadedMessageArchiveIDs": lambda m, community_id: _value(
        m.store.archive_ids(community_id)
    ),
    "wakuext_enableLogosStorageCommunityHistoryArchiveProtocol": lambda m, overrides=None: (
        m.enable_storage_archives(overrides)
    ),
    "wakuext_disableCommunityHistoryArchiveProtocol": lambda m: _value(m.set_archive_support(False)),
    "wakuext_debug": _debug,
    "wakuext_connect": _connect,
    # Chat transport wiring (gossipsub stands in for Waku; status-go dials Waku peers itself).
    "wakuext_listenAddresses": lambda m: _value(m.listen_addresses()),
    "wakuext_dialPeer": lambda m, address: m.dial_peer(address),
    "wakuext_peers": lambda m: _value(m.chat_peers()),
    "testbed_publishArchiveLink": _publish_link,
}
