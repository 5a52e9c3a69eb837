"""The REST API: paths, status codes, headers and bodies as upstream's (nim-codex
`codex/rest/api.nim` @ bd360322), under the era's prefix; the Logos era has no marketplace routes
(logos-storage-nim `storage/rest/api.nim` @ 10bb4975)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from multiaddr.exceptions import Error as MultiaddrError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from testbed_toolkit.cid import Cid, CidError
from testbed_toolkit.identity import PeerIdError, parse_peer_id
from testbed_toolkit.protobuf import DecodeError

from codexref import config as cfg
from codexref.blockexc.engine import RetriesExhaustedError
from codexref.dataset import EmptyDatasetError, store_stream
from codexref.manifest import Manifest
from codexref.node import Node
from codexref.store import BlockNotFoundError, QuotaNotEnoughError
from codexref.validation import (
    ContentDispositionError,
    filename_from_content_disposition,
    is_known_mimetype,
    is_valid_filename,
)

ERROR_TYPE = "text/html; charset=utf-8"  # what upstream's presto server sends with error bodies


def error(status: int, text: str = "", headers: dict[str, str] | None = None) -> Response:
    return Response(text, status_code=status, headers=headers, media_type=ERROR_TYPE)


async def not_found(request: Request, exc: Exception) -> Response:
    """No route for this method and path: 404, no body, no Content-Type, as upstream's router
    answers (nim-presto `presto/serverprivate.nim`: routes are keyed by method and path, so a known
    path with another method is 404 too, not 405)."""
    return Response(status_code=404)


class BodyTimeoutError(Exception):
    """No request body bytes arrived for the configured time."""


async def timed_body(request: Request, timeout_s: float) -> AsyncIterator[bytes]:
    """The request body; waiting more than `timeout_s` for the next chunk raises BodyTimeoutError.
    A bound per chunk, not on the whole body: a large upload may take as long as it keeps sending."""
    chunks = request.stream()
    while True:
        chunk = None
        with trio.move_on_after(timeout_s):
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
        if chunk is None:
            raise BodyTimeoutError
        yield chunk


async def drained(body: AsyncIterator[bytes], response: Response) -> Response:
    """Read what is left of the request body, then answer: a client still sending would
    otherwise see its connection reset instead of the documented status."""
    async for _ in body:
        pass
    return response


def pretty_json(data: object) -> Response:
    return Response(json.dumps(data, indent=2), media_type="application/json")


def wants_text(request: Request) -> bool:
    return "text/plain" in request.headers.get("accept", "")


def upload_filename(request: Request) -> str | None:
    """The Content-Disposition filename, read from the UTF-8 bytes the client sent (Starlette
    hands header values over decoded as latin-1). A header that is not UTF-8, does not parse,
    or names an invalid filename raises ValueError: upstream's 422 for all of them."""
    header = request.headers.get("content-disposition", "").encode("latin-1").decode("utf-8")
    filename = filename_from_content_disposition(header)
    if filename is not None and not is_valid_filename(filename):
        raise ContentDispositionError(f"invalid filename {filename!r}")
    return filename


def content_disposition(filename: str | None) -> str:
    """Upstream's download header, the filename as the UTF-8 bytes it was uploaded as (Starlette
    sends header text as latin-1). A remote manifest's name that is no valid filename (a quote,
    a line break) is left out instead of breaking the header."""
    if not filename or not is_valid_filename(filename):
        return "attachment"
    return f'attachment; filename="{filename}"'.encode().decode("latin-1")


def multiaddrs(texts: list[str]) -> list[str]:
    """The `addrs` query values, or none at all if one is malformed: upstream's decoder then
    fails the whole list (nim-presto presto/route.nim @ 92b1c7ff, seq[T] query arguments) and
    the node looks the peer up instead."""
    try:
        return [str(Multiaddr(text)) for text in texts]
    except MultiaddrError:
        return []


def build_app(node: Node) -> Starlette:
    store = node.store

    def with_cid(handler: Callable) -> Callable:
        """Parse `{cid}` first; a malformed one answers 400 with upstream's wording."""

        async def endpoint(request: Request) -> Response:
            try:
                cid = Cid.parse(request.path_params["cid"])
            except CidError as exc:
                return error(400, str(exc))
            return await handler(request, cid)

        return endpoint

    async def upload(request: Request) -> Response:
        """A body that stalls is 408 (ours: upstream waits forever); the connection then closes,
        since the rest of the body would be read as the next request."""
        try:
            return await store_upload(request, timed_body(request, node.config.api_body_timeout))
        except BodyTimeoutError:
            return error(408, "Request body timed out", {"Connection": "close"})

    async def store_upload(request: Request, body: AsyncIterator[bytes]) -> Response:
        mimetype = request.headers.get("content-type", "") or None
        if mimetype is not None and not is_known_mimetype(mimetype):
            return await drained(body, error(422, f"The MIME type '{mimetype}' is not valid."))
        try:
            filename = upload_filename(request)
        except ValueError:  # not UTF-8 (UnicodeDecodeError), or ContentDispositionError
            return await drained(body, error(422, "The filename is not valid."))
        try:
            cid = await store_stream(store, body, filename, mimetype)
        except (QuotaNotEnoughError, EmptyDatasetError) as exc:
            return await drained(body, error(500, str(exc)))
        node.metrics.inc("uploads")
        return Response(str(cid), media_type="text/plain")

    async def list_data(request: Request) -> Response:
        return JSONResponse({"content": [m.data_item(cid) for cid, m in store.manifests()]})

    def stream_response(manifest: Manifest, extra: dict[str, str] | None = None) -> Response:
        """Upstream's download headers; blocks missing locally are fetched while streaming."""
        headers = {
            "Content-Disposition": content_disposition(manifest.filename),
            "Content-Length": str(manifest.dataset_size),
            **(extra or {}),
        }
        node.metrics.inc("downloads")
        return StreamingResponse(
            node.engine.stream(manifest),
            headers=headers,
            media_type=manifest.mimetype or "application/octet-stream",
        )

    async def download_local(request: Request, cid: Cid) -> Response:
        try:
            manifest = store.manifest(cid)
        except (BlockNotFoundError, DecodeError) as exc:
            return error(404, f"The requested CID could not be retrieved ({exc}).")
        return stream_response(manifest)

    async def network_manifest(cid: Cid) -> Manifest | Response:
        try:
            return await node.engine.fetch_manifest(cid)
        except (RetriesExhaustedError, BlockNotFoundError, DecodeError) as exc:
            return error(404, str(exc))

    async def download_network(request: Request, cid: Cid) -> Response:
        manifest = await network_manifest(cid)
        if isinstance(manifest, Response):
            return manifest
        node.engine.start_fetch(manifest)
        return JSONResponse(manifest.data_item(cid))

    async def download_stream(request: Request, cid: Cid) -> Response:
        manifest = await network_manifest(cid)
        if isinstance(manifest, Response):
            return manifest
        return stream_response(manifest, {"Access-Control-Expose-Headers": "Content-Disposition"})

    async def manifest_only(request: Request, cid: Cid) -> Response:
        manifest = await network_manifest(cid)
        return manifest if isinstance(manifest, Response) else JSONResponse(manifest.data_item(cid))

    async def delete(request: Request, cid: Cid) -> Response:
        store.delete(cid)
        return Response(status_code=204)

    async def exists(request: Request, cid: Cid) -> Response:
        return JSONResponse({str(cid): store.has(cid)})

    def with_peer(handler: Callable) -> Callable:
        """Parse `{peer_id}` first; a malformed one answers 400 with upstream's wording."""

        async def endpoint(request: Request) -> Response:
            try:
                peer = ID(parse_peer_id(request.path_params["peer_id"]))
            except PeerIdError as exc:
                return error(400, str(exc))
            return await handler(request, peer)

        return endpoint

    async def connect(request: Request, peer: ID) -> Response:
        addrs = multiaddrs(request.query_params.getlist("addrs"))
        if not addrs and node.dht is not None:  # the Logos era looks the peer up in its DHT
            addrs = await node.dht.find_peer(peer)
        if not addrs:
            return error(400, "Unable to find Peer!")
        if not await node.connect(peer.to_base58(), addrs):
            return error(400, "Unable to dial peer")
        return Response("Successfully connected to peer", media_type="text/plain")

    async def space(request: Request) -> Response:
        return JSONResponse(store.space())

    async def debug_info(request: Request) -> Response:
        return pretty_json(node.debug_info())

    async def connection(request: Request, peer: ID) -> Response:
        """Testbed extension: how we are connected to a peer (direct or relayed paths) and the RTT
        of a libp2p ping over the path new streams take; DELETE disconnects."""
        if request.method == "DELETE":  # close every path to the peer (a clean slate for the next test)
            await node.host.disconnect(peer)
            return Response(status_code=204)
        found = await node.reachability.connection(peer)
        return pretty_json(found) if found else error(404, "Not connected to peer")

    async def peer_id(request: Request) -> Response:
        if wants_text(request):
            return Response(node.identity.peer_id, media_type="text/plain")
        return JSONResponse({"id": node.identity.peer_id})

    async def spr(request: Request) -> Response:
        if wants_text(request):
            return Response(node.spr, media_type="text/plain")
        return JSONResponse({"spr": node.spr})

    async def log_level(request: Request) -> Response:
        level = request.query_params.get("level")
        if not level:
            return error(400, "Missing log level")
        if level.split(";")[0].upper() not in cfg.LOG_LEVELS:
            return error(500, f"Invalid log level: {level}")
        node.set_log_level(level)
        return Response("")

    async def persistence_disabled(request: Request) -> Response:
        return error(503, "Persistence is not enabled")

    prefix = node.config.api_prefix
    routes = [
        Route(f"{prefix}/data", upload, methods=["POST"]),
        Route(f"{prefix}/data", list_data, methods=["GET"]),
        Route(f"{prefix}/data/{{cid}}", with_cid(download_local), methods=["GET"]),
        Route(f"{prefix}/data/{{cid}}", with_cid(delete), methods=["DELETE"]),
        Route(f"{prefix}/data/{{cid}}/exists", with_cid(exists), methods=["GET"]),
        Route(f"{prefix}/data/{{cid}}/network", with_cid(download_network), methods=["POST"]),
        Route(f"{prefix}/data/{{cid}}/network/stream", with_cid(download_stream), methods=["GET"]),
        Route(f"{prefix}/data/{{cid}}/network/manifest", with_cid(manifest_only), methods=["GET"]),
        Route(f"{prefix}/connect/{{peer_id}}", with_peer(connect), methods=["GET"]),
        Route(f"{prefix}/space", space, methods=["GET"]),
        Route(f"{prefix}/debug/info", debug_info, methods=["GET"]),
        Route(f"{prefix}/peerid", peer_id, methods=["GET"]),
        Route(f"{prefix}/spr", spr, methods=["GET"]),
        Route(f"{prefix}/debug/chronicles/loglevel", log_level, methods=["POST"]),
    ]
    if node.config.era.marketplace:
        routes += [
            Route(f"{prefix}/{path}", persistence_disabled, methods=["GET", "POST"])
            for path in ("sales/slots", "sales/availability", "storage/purchases", "storage/request/{cid}")
        ]
    if not node.config.strict:  # testbed extensions
        routes.append(
            Route(f"{prefix}/debug/connection/{{peer_id}}", with_peer(connection), methods=["GET", "DELETE"])
        )
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def build_metrics_app(node: Node) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
