"""The typed topology model a YAML file is loaded into. Validation lives in loader.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NODE_KINDS = ("codex",)
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
    env: dict[str, str] = field(default_factory=dict)

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

    @property
    def wan(self) -> Network:
        return next(n for n in self.networks.values() if n.kind == "wan")
