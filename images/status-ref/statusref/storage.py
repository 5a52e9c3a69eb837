"""The peer's storage node, as the archive protocol uses it: upload, fetch, stream, exists,
delete, connect, debug. Two forms with the same calls: `EmbeddedStorage` (statusref/embedded.py,
the node in this process, as status-go now runs libstorage) and `RestStorage` (a separate node
over its REST API, status-go's first proof of concept)."""

from __future__ import annotations

import logging
from typing import Protocol

import httpx
import trio

log = logging.getLogger("storage")


class StorageError(Exception):
    pass


class StorageTimeout(StorageError):
    """A download that did not finish in time (the index download is retried once on one)."""


class Storage(Protocol):
    def configure(self, overrides: dict) -> None: ...
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None: ...
    async def stop(self) -> None: ...
    async def upload(self, data: bytes, filename: str) -> str: ...
    async def download_network(self, cid: str, timeout: float) -> bytes: ...
    async def trigger_download(self, cid: str, timeout: float) -> dict: ...
    async def has_cid(self, cid: str) -> bool: ...
    async def local_download(self, cid: str) -> bytes: ...
    async def remove(self, cid: str) -> None: ...
    async def debug(self) -> dict: ...
    async def connect(self, peer_id: str, addrs: list[str]) -> None: ...


class RestStorage:
    """A separate storage node over its REST API (`CODEX_API_URL`); it runs on its own."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    def configure(self, overrides: dict) -> None:
        if overrides:
            log.info("a separate storage node has its own config: overrides %s not applied", overrides)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def stop(self) -> None:
        return None  # the separate node keeps running

    async def _call(self, method: str, path: str, timeout: float = 30.0, **kwargs) -> httpx.Response:
        try:
            response = await self.http.request(method, f"{self.api_url}{path}", timeout=timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise StorageTimeout(f"{method} {path}: no answer in {timeout:.0f} s") from exc
        except httpx.HTTPError as exc:
            raise StorageError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise StorageError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    async def upload(self, data: bytes, filename: str) -> str:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return (await self._call("POST", "/data", content=data, headers=headers)).text.strip()

    async def download_network(self, cid: str, timeout: float) -> bytes:
        """The whole dataset through `/network/stream`; StorageTimeout past `timeout`."""
        return (await self._call("GET", f"/data/{cid}/network/stream", timeout=timeout)).content

    async def trigger_download(self, cid: str, timeout: float) -> dict:
        return (await self._call("POST", f"/data/{cid}/network", timeout=timeout)).json()

    async def has_cid(self, cid: str) -> bool:
        return bool((await self._call("GET", f"/data/{cid}/exists")).json().get(cid))

    async def local_download(self, cid: str) -> bytes:
        return (await self._call("GET", f"/data/{cid}")).content

    async def remove(self, cid: str) -> None:
        await self._call("DELETE", f"/data/{cid}")

    async def debug(self) -> dict:
        return (await self._call("GET", "/debug/info")).json()

    async def connect(self, peer_id: str, addrs: list[str]) -> None:
        await self._call("GET", f"/connect/{peer_id}", params=[("addrs", a) for a in addrs])
