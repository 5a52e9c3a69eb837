"""A node's state shared by its REST API and background tasks: config, repo, identity, records."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from pathlib import Path

from Crypto.Hash import keccak

from codexref import VERSION, identity, multiaddr
from codexref.config import Config
from codexref.store import RepoStore

REVISION = "reference"
log = logging.getLogger("codex")


def _own_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def set_python_log_level(level: str) -> None:
    name = level.split(";")[0].upper()
    mapping = {"TRACE": "DEBUG", "NOTICE": "INFO", "WARN": "WARNING", "FATAL": "CRITICAL"}
    logging.getLogger().setLevel(mapping.get(name, name))


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.data_dir.chmod(0o700)
        self.store = RepoStore(config.data_dir, config.storage_quota)
        self.identity = identity.load_or_create(config.data_dir / "key")
        self.announce_ip = config.announce_ip or _own_ip()
        self.metrics: Counter[str] = Counter()
        # Like upstream's DHT record: the node's UDP discovery endpoint, first address reachable.
        dht_addr = f"/ip4/{self.announce_ip}/udp/{config.disc_port}"
        self.spr = self.identity.signed_peer_record([multiaddr.to_bytes(dht_addr)])

    @property
    def announce_addresses(self) -> list[str]:
        return [multiaddr.with_ip(addr, self.announce_ip) for addr in self.config.listen_addrs]

    def debug_info(self) -> dict:
        node_id = keccak.new(digest_bits=256, data=self.identity.peer_id_bytes).hexdigest()
        local = {
            "nodeId": node_id,
            "peerId": self.identity.peer_id,
            "record": self.spr,
            "address": f"{self.announce_ip}:{self.config.disc_port}",
            "seen": False,
        }
        return {
            "id": self.identity.peer_id,
            "addrs": list(self.config.listen_addrs),
            "repo": str(Path(self.config.data_dir)),
            "spr": self.spr,
            "announceAddresses": self.announce_addresses,
            "table": {"localNode": local, "nodes": []},
            "codex": {"version": VERSION, "revision": REVISION, "contracts": ""},
        }

    def set_log_level(self, level: str) -> None:
        set_python_log_level(level)
        log.info("log level set to %s", level)
