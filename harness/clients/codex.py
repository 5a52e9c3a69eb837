"""A client for the Codex REST API; the same for the reference node and upstream images.

Every call has a timeout: a node keeps searching the network for an unknown CID for a long time
(upstream up to 3000 retries of 2 s a block; docs/reference-node.md, "What it implements", REST).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

DEFAULT_TIMEOUT_S = 60.0


def announced_addresses(debug_info: dict) -> list[str]:
    """What a node announces, from its `/debug/info`: `announceAddresses` in the Codex era; the
    Logos era has none, and lists its announced addresses as `addrs` (storage/rest/json.nim)."""
    if "announceAddresses" in debug_info:
        return list(debug_info["announceAddresses"])
    return list(debug_info.get("addrs", []))


def dialable_addresses(debug_info: dict) -> list[str]:
    """The direct TCP addresses a node announces: where libp2p peers dial it (its relayed
    `/p2p-circuit` addresses, listed with them in the Logos era, are not)."""
    return [a for a in announced_addresses(debug_info) if "/tcp/" in a and "/p2p-circuit" not in a]


def circuit_addresses(debug_info: dict) -> list[str]:
    """The relayed addresses a node announces (`.../p2p-circuit`): it holds a reservation."""
    # a missing list may come as null (status-go's LogosStorageDebugInfo of a Logos-era node)
    addresses = [*(debug_info.get("addrs") or []), *(debug_info.get("announceAddresses") or [])]
    return sorted({a for a in addresses if "/p2p-circuit" in a})


@dataclass
class CodexApiError(Exception):
    method: str
    url: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}: {self.body[:500]}"


class CodexClient:
    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The raw response, whatever its status (for tests of error answers)."""
        kwargs.setdefault("timeout", self.timeout_s)
        return self.session.request(method, self.base_url + path, **kwargs)

    def _ok(self, method: str, path: str, expected: int = 200, **kwargs) -> requests.Response:
        response = self.request(method, path, **kwargs)
        if response.status_code != expected:
            raise CodexApiError(method, self.base_url + path, response.status_code, response.text)
        return response

    # -- data -------------------------------------------------------------------------------------
    def upload(
        self, data: bytes | Iterable[bytes], filename: str | None = None, mimetype: str | None = None
    ) -> str:
        headers = {}
        if mimetype:
            headers["Content-Type"] = mimetype
        if filename:
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return self._ok("POST", "/data", data=data, headers=headers).text.strip()

    def download(self, cid: str) -> bytes:
        return self._ok("GET", f"/data/{cid}").content

    def list(self) -> list[dict]:
        return self._ok("GET", "/data").json()["content"]

    def exists(self, cid: str) -> bool:
        return bool(self._ok("GET", f"/data/{cid}/exists").json()[cid])

    def delete(self, cid: str) -> None:
        self._ok("DELETE", f"/data/{cid}", expected=204)

    def space(self) -> dict:
        return self._ok("GET", "/space").json()

    # -- network ----------------------------------------------------------------------------------
    def network_download(self, cid: str) -> dict:
        """`POST /data/{cid}/network`: returns the DataItem once the manifest is here; the
        dataset keeps downloading in the background."""
        return self._ok("POST", f"/data/{cid}/network").json()

    def network_manifest(self, cid: str) -> dict:
        return self._ok("GET", f"/data/{cid}/network/manifest").json()

    def network_stream(self, cid: str) -> bytes:
        return self._ok("GET", f"/data/{cid}/network/stream").content

    def network_stream_to(self, cid: str, dest: Path, chunk: int = 1 << 20) -> int:
        with self._ok("GET", f"/data/{cid}/network/stream", stream=True) as response, dest.open("wb") as out:
            return sum(out.write(part) for part in response.iter_content(chunk))

    def connect(self, peer_id: str, addrs: list[str]) -> None:
        self._ok("GET", f"/connect/{peer_id}", params={"addrs": addrs})

    def connection(self, peer_id: str) -> dict:
        """Testbed extension of the reference node: paths to a peer (direct or relayed), ping RTT."""
        return self._ok("GET", f"/debug/connection/{peer_id}").json()

    def disconnect(self, peer_id: str) -> None:
        self._ok("DELETE", f"/debug/connection/{peer_id}", expected=204)

    # -- node -------------------------------------------------------------------------------------
    def debug_info(self, timeout_s: float | None = None) -> dict:
        return self._ok("GET", "/debug/info", timeout=timeout_s or self.timeout_s).json()

    def peer_id(self) -> str:
        return self._ok("GET", "/peerid", headers={"Accept": "text/plain"}).text.strip()

    def spr(self) -> str:
        return self._ok("GET", "/spr", headers={"Accept": "text/plain"}).text.strip()

    def set_log_level(self, level: str) -> None:
        self._ok("POST", "/debug/chronicles/loglevel", params={"level": level})
