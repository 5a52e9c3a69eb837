"""The build under test: which image, and which implementation's contract, a topology's storage
nodes run.

One selection for every entry point: `testbed up|load|nat-matrix --codex-image IMAGE --impl
codex|logos-storage`, `make testbed-up|test|load CODEX_IMAGE=... CODEX_IMPL=...` and `pytest
--codex-image ... --impl ...`. A node's own `image:` or `impl:` in its topology wins, so a mixed
swarm (reference and upstream nodes side by side) keeps its mix.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from harness.errors import TestbedError
from harness.impl import PROFILES
from harness.topology.loader import check_relay_clients, image_reference_problem
from harness.topology.model import Topology


@dataclass(frozen=True)
class BuildUnderTest:
    image: str | None = None  # None: the reference node, built here
    impl: str | None = None  # None: each node's own, else the default contract (Codex era)
    strict: bool = False  # reference nodes serve only what upstream serves: no test extras

    def __post_init__(self) -> None:
        if self.impl is not None and self.impl not in PROFILES:
            raise TestbedError(f"--impl {self.impl[:40]!r}: one of {', '.join(PROFILES)}")
        if self.image is not None and (problem := image_reference_problem(self.image)):
            raise TestbedError(f"--codex-image {self.image[:80]!r}: {problem}")

    def apply(self, topology: Topology) -> Topology:
        """The topology with every storage node that names no image or impl of its own running
        this build."""
        if self == BuildUnderTest():
            return topology
        nodes = {
            name: replace(
                node, image=node.image or self.image, impl=node.impl or self.impl, strict=self.strict
            )
            for name, node in topology.nodes.items()
        }
        selected = replace(topology, nodes=nodes)
        check_relay_clients(selected)
        return selected


REFERENCE = "reference"  # as an image argument: the reference node, built here


def baseline_of(candidate: BuildUnderTest, image: str) -> BuildUnderTest:
    """The build an A/B run compares the candidate with: the same contract, another image."""
    return replace(candidate, image=None if image == REFERENCE else image)


# `--codex-image` and `--impl`, as every command that brings nodes up (and pytest) takes them.
OPTIONS: list[tuple[tuple[str, ...], dict]] = [
    (
        ("--codex-image",),
        {
            "metavar": "IMAGE",
            "help": "run the storage nodes on this image (default: the reference node); a node's image: wins",
        },
    ),
    (
        ("--strict-reference",),
        {
            "action": "store_true",
            "help": "reference nodes serve only what upstream serves (no /debug/connection, no extra fields)",
        },
    ),
    (
        ("--impl",),
        {
            "choices": sorted(PROFILES),
            "help": "the contract the nodes serve: codex (Codex era) or logos-storage (2026); "
            "a node's impl: wins",
        },
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flags, options in OPTIONS:
        parser.add_argument(*flags, **options)


def from_arguments(args: argparse.Namespace) -> BuildUnderTest:
    return BuildUnderTest(
        image=args.codex_image or None, impl=args.impl or None, strict=args.strict_reference
    )
