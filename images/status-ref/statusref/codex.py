"""The peer's own Codex node, over its REST API (the PoC's way; status-go now embeds libstorage)."""

from __future__ import annotations

import httpx


class CodexError(Exception):
    pass


class Codex:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    async def _call(self, method: str, path: str, timeout: float = 30.0, **kwargs) -> httpx.Response:
        try:
            response = await self.http.request(method, f"{self.api_url}{path}", timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            raise  # callers tell a timeout apart: the index download is retried once on one
        except httpx.HTTPError as exc:
            raise CodexError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise CodexError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    async def upload(self, data: bytes, filename: str) -> str:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return (await self._call("POST", "/data", content=data, headers=headers)).text.strip()

    async def download_network(self, cid: str, timeout: float) -> bytes:
        """The whole dataset through `/network/stream`; raises httpx.TimeoutException past `timeout`."""
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
