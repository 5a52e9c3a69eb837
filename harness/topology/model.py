"""The typed topology model a YAML file is loaded into. Validation lives in loader.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NODE_KINDS = ("codex",)
PEERING_MODES = ("mesh", "none")
REPO_KINDS = ("fs", "sqlite")
NETWORK_KINDS = ("wan",)
REFERENCE_IMAGES = {"codex": "codex-ref"}


@dataclass(frozen=True)
class Network:
    name: str
    kind: str = "wan"


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    network: str
    image: str | None = None  # an upstream image ref; None means the reference implementation
    storage_quota: str | None = None
    block_ttl: str | None = None
    log_level: str | None = None
    repo_kind: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    peers: tuple[str, ...] = ()  # nodes this one must be connected to, besides `peering`

    @property
    def reference_image(self) -> str | None:
        """The name of the image this project builds for the node, if it uses one."""
        return REFERENCE_IMAGES[self.kind] if self.image is None else None


@dataclass(frozen=True)
class Topology:
    name: str
    source: Path
    networks: dict[str, Network]
    nodes: dict[str, Node]
    description: str = ""
    peering: str = "mesh"

    def edges(self) -> list[tuple[str, str]]:
        """Connections the testbed makes: all pairs for `mesh`, plus each node's `peers`."""
        names = list(self.nodes)
        pairs = (
            {(a, b) for i, a in enumerate(names) for b in names[i + 1 :]} if self.peering == "mesh" else set()
        )
        for node in self.nodes.values():
            for peer in node.peers:
                if (peer, node.name) not in pairs:
                    pairs.add((node.name, peer))
        return sorted(pairs)

    @property
    def wan(self) -> Network:
        return next(n for n in self.networks.values() if n.kind == "wan")
