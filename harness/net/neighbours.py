"""The host's neighbour (ARP) table limits, which cap how many containers can all talk to each other.

Linux keeps one neighbour table for every network namespace on the host, and its limits are the
host's (`net.ipv4.neigh.default.gc_thresh1..3`). Each container keeps an entry per on-link peer it
talks to. N containers that all talk to each other, as a mesh or a DHT does, need about N² entries.
The kernel's default hard limit of 1024 entries stops that near 32 containers: the kernel logs
`neighbour: arp_cache: neighbor table overflow!`, and new connections go unanswered until entries
expire.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from harness.topology.model import Topology

LIMITS_DIR = Path("/proc/sys/net/ipv4/neigh/default")
# Highest first, so that the thresholds stay ordered while they are raised one by one. 32768
# entries let about 180 containers all talk to each other.
WANTED = {"gc_thresh3": 32768, "gc_thresh2": 16384, "gc_thresh1": 4096}
HARD_LIMIT = "gc_thresh3"


def limits(directory: Path = LIMITS_DIR) -> dict[str, int] | None:
    """The current thresholds; None where the engine's kernel is not this host's (no files)."""
    try:
        return {name: int((directory / name).read_text()) for name in WANTED}
    except (FileNotFoundError, ValueError):
        return None


def containers_that_talk(topology: Topology) -> int:
    """The containers that may all talk to each other: storage nodes, status peers and relays
    (routers talk only to their LAN and the WAN)."""
    return len(topology.nodes) + len(topology.status) + len(topology.relays)


def max_containers(hard_limit: int) -> int:
    return math.isqrt(hard_limit)


def describe(current: dict[str, int] | None) -> tuple[bool, str]:
    """(whether the limits are at least WANTED, a line for `testbed doctor`)."""
    if current is None:
        return True, "not this host's kernel: not checked"
    hard = current[HARD_LIMIT]
    detail = f"{HARD_LIMIT} {hard}: about {max_containers(hard)} containers that all talk to each other"
    if all(current[name] >= wanted for name, wanted in WANTED.items()):
        return True, detail
    return False, f"{detail}; `testbed doctor --fix` (root) raises it to {WANTED[HARD_LIMIT]}"


def warn_if_short(topology: Topology, log: Callable[[str], None], directory: Path = LIMITS_DIR) -> None:
    """A warning, not an error: a star topology whose nodes never talk to each other fits in far
    fewer entries than N²."""
    current = limits(directory)
    count = containers_that_talk(topology)
    if current is None or count * count <= current[HARD_LIMIT]:
        return
    log(
        f"warning: {count} containers that may all talk to each other need about {count * count} "
        f"neighbour table entries; this host allows {current[HARD_LIMIT]} "
        f"(net.ipv4.neigh.default.{HARD_LIMIT}): beyond that, connections go unanswered. "
        f"`testbed doctor --fix` (root) raises it to {WANTED[HARD_LIMIT]}"
    )


def raise_limits(directory: Path = LIMITS_DIR) -> str:
    """Raise each threshold to WANTED; never lower one. Returns what was done, for `doctor --fix`."""
    current = limits(directory)
    if current is None:
        return "neighbour table: not this host's kernel: left alone"
    raised = []
    for name, wanted in WANTED.items():
        if current[name] >= wanted:
            continue
        try:
            (directory / name).write_text(str(wanted))
        except OSError as exc:
            return (
                f"neighbour table: could not raise {name} to {wanted} ({exc.strerror}); "
                f"as root: sysctl -w net.ipv4.neigh.default.{name}={wanted}"
            )
        raised.append(f"{name} {current[name]} -> {wanted}")
    if not raised:
        return "neighbour table: limits already raised"
    return f"neighbour table: raised {', '.join(raised)} (host sysctls, until reboot)"
