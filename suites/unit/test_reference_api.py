"""The reference node's REST API against hostile input, in-process (issue 16, "Bad input").

Requests go through httpx's ASGI transport; tests about stalled connections talk to a real
hypercorn server on loopback. Nothing here starts the libp2p host unless a test says so."""

from __future__ import annotations

import socket
from pathlib import Path

import base58
import httpx
import pytest
import trio
from codexref import config
from codexref.api import build_app
from codexref.dataset import store_stream
from codexref.node import Node
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from libp2p.peer.id import ID
from starlette.applications import Starlette
from testbed_toolkit import identity
from testbed_toolkit.cid import Cid, CidError
from testbed_toolkit.serving import hypercorn_config

PREFIX = "/api/codex/v1"
A_PEER_ID = "16Uiu2HAm6HZZr7aToTvEBPpiys4UxajCTU97zj5v7RNR2gbniy1D"


def make_node(tmp_path: Path, *flags: str) -> Node:
    return Node(config.load(["--data-dir", str(tmp_path / "node"), *flags]))


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_node(tmp_path)


@pytest.fixture
def app(node: Node) -> Starlette:
    return build_app(node)


async def _send(app: Starlette, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        return await client.request(method, PREFIX + path, **kwargs)


def call(app: Starlette, method: str, path: str, **kwargs) -> httpx.Response:
    return trio.run(lambda: _send(app, method, path, **kwargs))


@pytest.mark.parametrize("peer_id", ["%C3%A9t%C3%A9", "abc", "0OIl", A_PEER_ID[:-1], A_PEER_ID + "1"])
@pytest.mark.parametrize("route", ["/connect/{}?addrs=/ip4/127.0.0.1/tcp/1", "/debug/connection/{}"])
def test_a_malformed_peer_id_is_400_with_upstreams_text(app: Starlette, route: str, peer_id: str) -> None:
    response = call(app, "GET", route.format(peer_id))
    assert (response.status_code, response.text) == (400, "peerid: incorrect PeerId string")


@pytest.mark.parametrize(
    "addrs", [["/nonsense"], ["/ip4/é/tcp/1"], ["/ip4/127.0.0.1/tcp/1", "/ip4/300.1.1.1/tcp/1"]]
)
def test_a_malformed_address_is_treated_as_none_given_like_upstream(app: Starlette, addrs: list[str]) -> None:
    response = call(app, "GET", f"/connect/{A_PEER_ID}", params={"addrs": addrs})
    assert (response.status_code, response.text) == (400, "Unable to find Peer!")


@pytest.mark.parametrize(
    "peer_id",
    [
        A_PEER_ID,  # secp256k1 key inlined (identity multihash), as Codex nodes have
        "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",  # ed25519, identity multihash
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # sha2-256 of an RSA key
    ],
)
def test_well_formed_peer_ids_parse(peer_id: str) -> None:
    assert ID(identity.parse_peer_id(peer_id)).to_base58() == peer_id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connect_to_our_own_peer_id_is_refused_like_upstream(tmp_path: Path) -> None:
    """Upstream's dialer refuses to dial itself; before, we dialled our own listener and
    /debug/info listed us as our own peer."""
    node = make_node(tmp_path, "--listen-addrs", f"/ip4/127.0.0.1/tcp/{free_port()}")
    app = build_app(node)

    async def scenario() -> tuple[httpx.Response, dict]:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run_p2p)
            own = f"/connect/{node.identity.peer_id}?addrs={node.config.listen_addrs[0]}"
            with trio.fail_after(15):
                response = await _send(app, "GET", own)
                info = (await _send(app, "GET", "/debug/info")).json()
            nursery.cancel_scope.cancel()
        return response, info

    response, info = trio.run(scenario)
    assert (response.status_code, response.text) == (400, "Unable to dial peer")
    assert info["table"]["nodes"] == [] and info["connections"] == []


def listed_filenames(app: Starlette) -> list[str | None]:
    return [item["manifest"].get("filename") for item in call(app, "GET", "/data").json()["content"]]


@pytest.mark.parametrize(
    "header",
    [
        b'attachment; filename="abc',  # was stored as `ab`
        b'attachment; filename="a.bin" junk',
        b'attachment; filename="\xff.bin"',  # not UTF-8
        b'attachment; filename="a/b.bin"',
    ],
)
def test_an_upload_with_a_malformed_content_disposition_is_422_and_stores_nothing(
    app: Starlette, header: bytes
) -> None:
    response = call(app, "POST", "/data", content=b"hello", headers={"Content-Disposition": header})
    assert (response.status_code, response.text) == (422, "The filename is not valid.")
    assert listed_filenames(app) == []


def test_a_utf8_filename_round_trips_as_the_bytes_sent(app: Starlette) -> None:
    header = 'attachment; filename="名前 ünï.txt"'.encode()
    uploaded = call(app, "POST", "/data", content=b"hello", headers={"Content-Disposition": header})
    assert uploaded.status_code == 200
    assert listed_filenames(app) == ["名前 ünï.txt"]
    downloaded = call(app, "GET", f"/data/{uploaded.text}")
    assert (downloaded.status_code, downloaded.content) == (200, b"hello")
    assert (b"content-disposition", header) in downloaded.headers.raw


async def _one_chunk(data: bytes):
    yield data


def test_a_manifest_name_that_is_no_valid_filename_is_left_out_of_the_download_header(
    node: Node, app: Starlette
) -> None:
    """A remote manifest can carry any name: a quote or line break must not break the header."""
    cid = trio.run(store_stream, node.store, _one_chunk(b"hello"), 'say "hi"\r\nX-Evil: 1', None)
    downloaded = call(app, "GET", f"/data/{cid}")
    assert downloaded.status_code == 200 and downloaded.headers["content-disposition"] == "attachment"


async def _exchange(app: Starlette, hypercorn: HypercornConfig, request: bytes) -> tuple[bytes, float]:
    """Serve `app` on loopback, send `request` and read until the server closes (at most 10 s):
    what came back and how long it took."""
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, hypercorn)
        stream = await trio.open_tcp_stream("127.0.0.1", int(binds[0].rsplit(":", 1)[1]))
        await stream.send_all(request)
        started, answer = trio.current_time(), b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                answer += chunk
        nursery.cancel_scope.cancel()
    return answer, trio.current_time() - started


@pytest.mark.parametrize("extra", ["", "Content-Type: foo/bar\r\n"], ids=["stored", "drained-after-422"])
def test_a_stalled_upload_body_is_408_and_closed_after_the_body_timeout(tmp_path: Path, extra: str) -> None:
    app = build_app(make_node(tmp_path, "--api-body-timeout", "0.5"))
    head = f"POST {PREFIX}/data HTTP/1.1\r\nHost: node\r\n{extra}Content-Length: 100\r\n\r\n"
    stalled = head.encode() + b"x" * 10
    answer, took = trio.run(_exchange, app, hypercorn_config("127.0.0.1:0"), stalled)
    assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b"\r\n\r\nRequest body timed out")
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert 0.5 <= took < 5
    assert listed_filenames(app) == []


def test_a_stalled_request_head_is_closed_after_the_keep_alive_timeout(app: Starlette) -> None:
    """Hypercorn's idle timer runs until a request head is complete: it bounds a stalled head."""
    hypercorn = hypercorn_config("127.0.0.1:0")
    hypercorn.keep_alive_timeout = 0.5
    answer, took = trio.run(_exchange, app, hypercorn, f"POST {PREFIX}/data HTTP/1.1\r\nHost: no".encode())
    assert answer == b"" and 0.5 <= took < 5


def test_overlong_ids_are_refused_before_base58_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Base58 decoding is quadratic: a 16 KiB path would hold the event loop for 0.2 s."""

    def refuse(*args: object) -> bytes:
        raise AssertionError("an overlong id was decoded")

    monkeypatch.setattr(base58, "b58decode", refuse)
    with pytest.raises(CidError, match=r"^Incorrect Cid$"):
        Cid.parse("z" + "2" * 200)
    with pytest.raises(identity.PeerIdError, match=r"^peerid: incorrect PeerId string$"):
        identity.parse_peer_id("2" * 200)
