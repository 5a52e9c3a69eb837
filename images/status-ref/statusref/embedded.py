"""The peer's storage node in its own process, as status-go runs libstorage: the reference node's
engine, configured by a JSON object whose keys are the node's CLI option names (libstorage's
`storage_new(configJson)`), with its own identity, listen port, relay client and hole punching.
Like libstorage, it never serves REST (the library turns the API off whatever the config says);
with `"metrics": true` it serves `/metrics` as the node does."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator

import trio
from codexref import config as node_config
from codexref import lifecycle
from codexref.blockexc.engine import RetriesExhaustedError
from codexref.dataset import EmptyDatasetError, store_stream
from codexref.node import Node
from codexref.store import BlockNotFoundError, QuotaNotEnoughError
from testbed_toolkit.cid import Cid, CidError
from testbed_toolkit.protobuf import DecodeError

from statusref.storage import StorageError, StorageTimeout

log = logging.getLogger("storage")
ERA = "logos-storage"  # libstorage is a Logos Storage build
# What a node raises for a CID it cannot get or read: the archive protocol's "not downloaded".
NOT_AVAILABLE = (RetriesExhaustedError, BlockNotFoundError, DecodeError, CidError)


def config_argv(config: dict) -> list[str]:
    """A libstorage config as the node's command line: `{"listen-port": 8070}` is
    `--listen-port 8070`, a list repeats its option, `true` is a bare switch, `false` and null
    leave the option out."""
    argv: list[str] = []
    for key, value in config.items():
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                argv.append(f"--{key}")
            elif item not in (False, None):
                argv += [f"--{key}", str(item)]
    return argv


# status-go's config overrides (`NodeConfig.<Field>`, services/logosstorage/
# logos_storage_config_overrides.go) -> the node's option each field is serialised as.
OVERRIDE_KEYS = {
    "NodeConfig.LogLevel": "log-level",
    "NodeConfig.MetricsEnabled": "metrics",
    "NodeConfig.MetricsAddress": "metrics-address",
    "NodeConfig.MetricsPort": "metrics-port",
    "NodeConfig.DataDir": "data-dir",
    "NodeConfig.Nat": "nat",
    "NodeConfig.BootstrapNodes": "bootstrap-node",
    "NodeConfig.RepoKind": "repo-kind",
    "NodeConfig.StorageQuota": "storage-quota",
    "NodeConfig.BlockTtl": "block-ttl",
    "NodeConfig.BlockMaintenanceInterval": "block-mi",
    "NodeConfig.BlockMaintenanceNumberOfBlocks": "block-mn",
    "NodeConfig.BlockRetries": "block-retries",
}
# Fields of the older bindings the 2026 node has no option for: accepted, logged, not applied
# (upstream's own archive test passes DiscoveryPort; the Logos-era node has no discv5).
IGNORED_OVERRIDES = ("NodeConfig.DiscoveryPort", "NodeConfig.ListenAddrs", "NodeConfig.LogFormat")


def config_from_overrides(overrides: dict) -> dict:
    """status-go's overrides as libstorage config keys. Values are strings there; a list field
    (BootstrapNodes) is a JSON array or comma-separated, a switch is "true"/"false"."""
    config: dict = {}
    for field, value in overrides.items():
        if field == "Enabled" or field in IGNORED_OVERRIDES:
            log.info("storage override %s=%r not applied by this node", field, value)
            continue
        if field not in OVERRIDE_KEYS:
            raise StorageError(f"unknown storage config override {field!r}")
        key, text = OVERRIDE_KEYS[field], str(value).strip()
        if key == "bootstrap-node":
            config[key] = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
        elif key == "metrics":
            config[key] = text.lower() == "true"
        else:
            config[key] = text
    return config


def load_config(config: dict) -> node_config.Config:
    """The node's config from a libstorage config alone (never this process's environment);
    a bad key or value is a StorageError naming it, as storage_new fails with RET_ERR."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return node_config.load(["--impl", ERA, *config_argv(config)], environ={})
    except SystemExit:
        problem = stderr.getvalue().strip().splitlines()
        raise StorageError(f"invalid storage config: {problem[-1] if problem else config}") from None


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


class EmbeddedStorage:
    def __init__(self, config: dict) -> None:
        self.base = dict(config)
        self.config = load_config(self.base)
        self.node: Node | None = None
        self._stop = trio.Event()

    def configure(self, overrides: dict) -> None:
        """status-go's overrides over the base config, for the next start; StorageError if bad."""
        self.config = load_config({**self.base, **config_from_overrides(overrides)})

    @property
    def _node(self) -> Node:
        if self.node is None:
            raise StorageError("the storage node is not started")
        return self.node

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the node (storage_new + storage_start) and serve until `stop`."""
        self.node, self._stop = Node(self.config), trio.Event()
        try:
            await lifecycle.run(self.node, self._stop, rest=False, task_status=task_status)
        finally:
            self.node = None

    async def stop(self) -> None:
        """storage_stop: the node closes its connections and listeners, then its tasks end."""
        self._stop.set()
        while self.node is not None:
            await trio.sleep(0.05)

    async def upload(self, data: bytes, filename: str) -> str:
        try:
            return str(await store_stream(self._node.store, _one_chunk(data), filename, None))
        except (QuotaNotEnoughError, EmptyDatasetError) as exc:
            raise StorageError(f"upload {filename}: {exc}") from exc

    async def _manifest(self, cid: str):
        try:
            return await self._node.engine.fetch_manifest(Cid.parse(cid))
        except NOT_AVAILABLE as exc:
            raise StorageError(f"{cid}: {exc}") from exc

    async def download_network(self, cid: str, timeout: float) -> bytes:
        """The whole dataset from the network (DownloadStream); StorageTimeout past `timeout`."""
        with trio.move_on_after(timeout):
            manifest = await self._manifest(cid)
            try:
                return b"".join([chunk async for chunk in self._node.engine.stream(manifest)])
            except NOT_AVAILABLE as exc:
                raise StorageError(f"{cid}: {exc}") from exc
        raise StorageTimeout(f"{cid}: not downloaded in {timeout:.0f} s")

    async def trigger_download(self, cid: str, timeout: float) -> dict:
        """The manifest, and the dataset fetched in the background (Fetch)."""
        with trio.move_on_after(timeout):
            manifest = await self._manifest(cid)
            self._node.engine.start_fetch(manifest)
            return manifest.data_item(Cid.parse(cid))
        raise StorageTimeout(f"{cid}: no manifest in {timeout:.0f} s")

    async def has_cid(self, cid: str) -> bool:
        try:
            return self._node.store.has(Cid.parse(cid))
        except CidError as exc:
            raise StorageError(str(exc)) from exc

    async def local_download(self, cid: str) -> bytes:
        """The dataset from the local repo only (DownloadStream with local set)."""
        try:
            manifest = self._node.store.manifest(Cid.parse(cid))
            return b"".join([chunk async for chunk in self._node.engine.stream(manifest)])
        except NOT_AVAILABLE as exc:
            raise StorageError(f"{cid}: {exc}") from exc

    async def remove(self, cid: str) -> None:
        try:
            self._node.store.delete(Cid.parse(cid))
        except CidError as exc:
            raise StorageError(str(exc)) from exc

    async def debug(self) -> dict:
        return self._node.debug_info()

    async def connect(self, peer_id: str, addrs: list[str]) -> None:
        if not await self._node.connect(peer_id, addrs):
            raise StorageError(f"unable to dial peer {peer_id}")
