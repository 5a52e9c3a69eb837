"""Client of a status-backend HTTP surface (the reference peer or a real status-backend image).

Signals are buffered from the moment the client connects to `ws /signals`, and waits search that
buffer from the beginning with a predicate (never "wait after the fact": the signal may already
have arrived), each with a deadline that reports what arrived instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
import websocket

from harness.errors import TestbedError, WaitTimeout
from harness.waits import NotYet, wait_until

METHOD_NOT_FOUND = -32601
DATA_DIR = "/usr/status-user"  # status-backend's data dir in its container


class StatusRpcError(TestbedError):
    def __init__(self, method: str, error: dict) -> None:
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.code = error.get("code")


@dataclass(frozen=True)
class Signal:
    type: str
    event: dict
    at: float  # monotonic time of arrival


class SignalBuffer:
    """Every envelope from `ws /signals`, in order, read by a background thread."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=10)
        self.socket.settimeout(None)
        self.signals: list[Signal] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                envelope = json.loads(self.socket.recv())
                with self._arrived:
                    self.signals.append(
                        Signal(envelope["type"], envelope.get("event") or {}, time.monotonic())
                    )
                    self._arrived.notify_all()
        except (websocket.WebSocketException, OSError, ValueError):
            return  # closed

    def find(
        self, kind: str, predicate: Callable[[dict], bool] = lambda _: True, start: int = 0
    ) -> list[Signal]:
        with self._arrived:
            return [s for s in self.signals[start:] if s.type == kind and predicate(s.event)]

    def expect(
        self,
        kind: str,
        predicate: Callable[[dict], bool] = lambda _: True,
        timeout_s: float = 30,
        start: int = 0,
    ) -> Signal:
        """The first `kind` signal from index `start` on that matches; waits up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                for signal in self.signals[start:]:
                    if signal.type == kind and predicate(signal.event):
                        return signal
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [s.type for s in self.signals[start:]][-15:]
                    raise WaitTimeout(f"no {kind} signal within {timeout_s:.0f} s; last signals: {seen}")
                self._arrived.wait(left)

    def mark(self) -> int:
        """Index to start a later `expect` from (signals before it are ignored)."""
        with self._arrived:
            return len(self.signals)

    def close(self) -> None:
        self.socket.close()


class StatusClient:
    def __init__(self, base_url: str, timeout_s: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.signals = SignalBuffer(self.base_url.replace("http://", "ws://") + "/signals")

    def close(self) -> None:
        self.signals.close()
        self.session.close()

    def health(self) -> dict:
        response = self.session.post(f"{self.base_url}/health", timeout=self.timeout_s)
        response.raise_for_status()
        return response.json()

    def call(self, function: str, body: dict | None = None) -> dict:
        """POST /statusgo/<function>; raises when the answer carries a non-empty `error`."""
        response = self.session.post(
            f"{self.base_url}/statusgo/{function}", json=body or {}, timeout=self.timeout_s
        )
        response.raise_for_status()
        answer = response.json()
        if answer.get("error"):
            raise TestbedError(f"{function}: {answer['error']}")
        return answer

    def rpc(self, method: str, *params):
        request = {"jsonrpc": "2.0", "id": int(time.time() * 1000), "method": method, "params": list(params)}
        response = self.session.post(
            f"{self.base_url}/statusgo/CallRPC", json=request, timeout=self.timeout_s
        )
        response.raise_for_status()
        answer = response.json()
        if "error" in answer:
            raise StatusRpcError(method, answer["error"])
        return answer.get("result")

    # -- flows --------------------------------------------------------------------------------------
    def create_account_and_login(
        self,
        name: str,
        interval_s: float,
        import_delay_s: float,
        data_dir: str = DATA_DIR,
        storage_bootstrap: str | None = None,
    ) -> str:
        """InitializeApplication + CreateAccountAndLogin with storage on (and `storage_bootstrap`,
        an SPR, as the storage node's bootstrap node: status-go's
        `logosStorageConfigBootstrapNode`); returns the keyUid once `node.login` came."""
        mark = self.signals.mark()
        self.call("InitializeApplication", {"dataDir": data_dir})
        bootstrap = {"logosStorageConfigBootstrapNode": storage_bootstrap} if storage_bootstrap else {}
        self.call(
            "CreateAccountAndLogin",
            {
                "rootDataDir": data_dir, "displayName": name, "password": "testbed-password",
                "kdfIterations": 256000, "logosStorageConfigEnabled": True, "torrentConfigEnabled": False,
                "messageArchiveInterval": interval_s, "importInitialDelay": import_delay_s, **bootstrap,
            },
        )  # fmt: skip
        return self.signals.expect("node.login", start=mark, timeout_s=30).event["keyUid"]

    def login(self, key_uid: str) -> None:
        mark = self.signals.mark()
        self.call(
            "LoginAccount", {"keyUid": key_uid, "password": "testbed-password", "kdfIterations": 256000}
        )
        self.signals.expect("node.login", start=mark, timeout_s=30)

    def logout(self) -> None:
        self.call("Logout")


def wire_chat(clients: list[StatusClient], fleet_info_url: str) -> None:
    """Every peer's chat transport dials the Waku fleet node (`GET <fleet>/info` names it), as
    status-go dials its fleet: the peers chat through it, behind NATs too. Each peer remembers
    whom it dialled and redials after a login."""
    response = requests.get(fleet_info_url, timeout=10)
    response.raise_for_status()
    info = response.json()
    address = next(a for a in info["addrs"] if "/p2p/" in a)
    for client in clients:
        client.rpc("wakuext_dialPeer", address)


def storage_info(peer: StatusClient) -> dict:
    """The peer's storage node as status-go reports it (`wakuext_debug`: LogosStorageDebugInfo,
    id, addrs, spr, announceAddresses, table)."""
    return peer.rpc("wakuext_debug")


def connect_storage(dialer: StatusClient, target: StatusClient) -> None:
    """The dialer's storage node connects to the target's by hand (`wakuext_connect`), as
    upstream's archive test does: its bootstrap nodes did not work there, and a node without a
    DHT finds providers only among the peers it is connected to."""
    info = storage_info(target)
    dialer.rpc("wakuext_connect", info["id"], info["addrs"])


def create_community(owner: StatusClient, name: str) -> tuple[str, str]:
    """A community with history archives on; returns (community id, its default chat id)."""
    created = owner.rpc(
        "wakuext_createCommunity",
        {
            "name": name,
            "description": name,
            "color": "#4360df",
            "membership": 3,
            "historyArchiveSupportEnabled": True,
        },
    )
    return created["communities"][0]["id"], created["chats"][0]["id"]


def join_community(
    owner: StatusClient, member: StatusClient, community_id: str, deadline_s: float = 30
) -> None:
    """fetch -> request to join -> the owner accepts (retried: it gets no signal for the request)
    -> the member lists the community as joined."""
    member.rpc(
        "wakuext_fetchCommunity", {"communityKey": community_id, "waitForResponse": True, "tryDatabase": True}
    )
    request = member.rpc("wakuext_requestToJoinCommunity", {"communityId": community_id})
    request_id = request["requestsToJoinCommunity"][0]["id"]

    def accepted() -> bool:
        try:
            owner.rpc("wakuext_acceptRequestToJoinCommunity", {"id": request_id})
        except StatusRpcError as exc:
            raise NotYet(str(exc)) from None
        return True

    def joined() -> bool:
        if not any(c["id"] == community_id for c in member.rpc("wakuext_joinedCommunities")):
            raise NotYet("not joined yet")
        return True

    wait_until(f"the owner to accept request {request_id}", accepted, deadline_s)
    wait_until(f"the member to join {community_id}", joined, deadline_s)


def chat_texts(client: StatusClient, chat_id: str) -> list[str]:
    """The texts a peer holds in a chat, oldest first."""
    messages = client.rpc("wakuext_chatMessages", chat_id, "", 1000)["messages"]
    return [m["text"] for m in sorted(messages, key=lambda m: m["clock"])]
