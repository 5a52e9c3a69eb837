"""Per-run subnets from a configurable pool, never overlapping the engine's or the host's networks.

Parallel runs (pytest -n 4, two terminals) allocate under a file lock and leave a short-lived
reservation, so two runs cannot pick the same subnet between allocation and `compose up`.
The WAN pool is public-looking on purpose: libp2p stacks skip hole punching on RFC 1918 and
100.64/10 addresses (docs/architecture.md, "Network model"). The WAN network is `internal`, so nothing
addressed there ever leaves the machine.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from harness.errors import PoolConfigError, PoolExhaustedError, excerpt, shorten
from harness.paths import cache_dir

DEFAULT_WAN_POOL = "11.200.0.0/16"
DEFAULT_LAN_POOL = "10.213.0.0/16"  # private on purpose: LANs sit behind the emulated NATs
DEFAULT_CARRIER_POOL = "100.64.0.0/16"  # RFC 6598 shared space, between home routers and a CGN
SUBNET_PREFIX = 24
RESERVATION_TTL_S = 15 * 60
CLASH_RECHECK_S = 1.0
# The variable that sets each network kind's pool, and its default (an empty variable is unset).
POOL_VARIABLES = {
    "wan": ("TESTBED_WAN_POOL", DEFAULT_WAN_POOL),
    "lan": ("TESTBED_LAN_POOL", DEFAULT_LAN_POOL),
    "carrier": ("TESTBED_CARRIER_POOL", DEFAULT_CARRIER_POOL),
}
# Ranges no pool may touch: their addresses are not unicast addresses a bridge can carry.
SPECIAL_RANGES = {
    "0.0.0.0/8": "unspecified ('this network')",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved, with the broadcast address",
}

Subnet = ipaddress.IPv4Network


def parse_pool(variable: str, text: str) -> Subnet:
    """The pool a variable's value names; refuses what cannot hold a testbed network."""
    try:
        pool = ipaddress.IPv4Network(text)
    except ValueError as exc:
        problem = shorten(str(exc), 100)
        raise PoolConfigError(f"{variable}={excerpt(text)}: not an IPv4 network/prefix ({problem})") from None
    if pool.prefixlen > SUBNET_PREFIX:
        raise PoolConfigError(f"{variable}={pool}: too small, a pool must hold a /{SUBNET_PREFIX}")
    for special, what in SPECIAL_RANGES.items():
        if pool.overlaps(ipaddress.IPv4Network(special)):
            raise PoolConfigError(f"{variable}={pool}: overlaps {special} ({what})")
    return pool


def pool_for(kind: str) -> Subnet:
    """The pool of a network kind (wan, lan or carrier), from its variable or the default."""
    variable, default = POOL_VARIABLES[kind]
    return parse_pool(variable, os.environ.get(variable) or default)


def wan_pool() -> Subnet:
    return pool_for("wan")


def lan_pool() -> Subnet:
    return pool_for("lan")


def carrier_pool() -> Subnet:
    return pool_for("carrier")


def check_pools(kinds: Iterable[str], routes: list[Subnet], engine: list[Subnet]) -> None:
    """Refuse a pool overlapping a route of the host's own (`routes` that are none of the `engine`'s
    networks): a testbed network there would capture the host's traffic to that range."""
    own = [route for route in routes if route not in engine]
    for kind in dict.fromkeys(kinds):
        pool = pool_for(kind)
        clash = next((route for route in own if route.overlaps(pool)), None)
        if clash is not None:
            raise PoolConfigError(
                f"{POOL_VARIABLES[kind][0]}={pool}: overlaps the host's route to {clash}; "
                "choose a range the host does not use"
            )


def check_host(kinds: Iterable[str]) -> None:
    """Validate the pools the network `kinds` draw from, before anything is created."""
    checked_routes_and_engine(kinds)


def routes_and_engine() -> tuple[list[Subnet], list[Subnet]]:
    """The host's routes, and the engine's subnets read before and after them: a network another
    run removes meanwhile still counts as the engine's, not as a route of the host's own."""
    engine = engine_subnets()
    routes = host_routes()
    return routes, list(dict.fromkeys([*engine, *engine_subnets()]))


def checked_routes_and_engine(kinds: Iterable[str]) -> tuple[list[Subnet], list[Subnet]]:
    """`routes_and_engine`, once the pools of `kinds` overlap none of the host's own routes. A
    clash is read once more a moment later: a network another run is creating can have its
    bridge's route before the engine lists it, while a route of the host's own stays."""
    kinds = list(kinds)
    routes, engine = routes_and_engine()
    try:
        check_pools(kinds, routes, engine)
    except PoolConfigError:
        time.sleep(CLASH_RECHECK_S)
        routes, engine = routes_and_engine()
        check_pools(kinds, routes, engine)
    return routes, engine


def host_routes() -> list[Subnet]:
    """Destinations the host already routes (other than the default route)."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        dest, mask = int(fields[1], 16), int(fields[7], 16)
        if mask == 0:
            continue
        # /proc/net/route prints little-endian hex
        net = ipaddress.IPv4Address(dest.to_bytes(4, "little"))
        prefix = bin(mask).count("1")
        routes.append(ipaddress.IPv4Network(f"{net}/{prefix}", strict=False))
    return routes


def engine_subnets() -> list[Subnet]:
    """Subnets of the engine's networks (none when no engine answers: nothing can clash then)."""
    import docker

    try:
        client = docker.from_env()
        networks = client.api.networks()
    except docker.errors.DockerException:
        return []
    found = []
    for network in networks:
        for cfg in (network.get("IPAM") or {}).get("Config") or []:
            if "Subnet" in cfg and ":" not in cfg["Subnet"]:
                found.append(ipaddress.IPv4Network(cfg["Subnet"]))
    return found


class SubnetAllocator:
    """Hands out free /24s from the pool; `taken` extends the set of subnets to avoid."""

    def __init__(self, pool: Subnet, taken: Iterable[Subnet] = ()) -> None:
        self.pool = pool
        self.taken = list(taken)

    def allocate(self) -> Subnet:
        for candidate in self.pool.subnets(new_prefix=SUBNET_PREFIX):
            if not any(candidate.overlaps(used) for used in self.taken):
                self.taken.append(candidate)
                return candidate
        raise PoolExhaustedError(
            f"no free /{SUBNET_PREFIX} left in {self.pool}; run `testbed clean` or set TESTBED_WAN_POOL"
        )


def allocate(kinds: list[str], taken: list[Subnet]) -> list[Subnet]:
    """One subnet per kind, each from its pool, none overlapping `taken` or each other."""
    subnets: list[Subnet] = []
    for kind in kinds:
        subnets.append(SubnetAllocator(pool_for(kind), [*taken, *subnets]).allocate())
    return subnets


def preview(kinds: list[str]) -> list[Subnet]:
    """What `reserve` would pick now, without reserving (for `testbed render`)."""
    routes, engine = checked_routes_and_engine(kinds)
    return allocate(kinds, [*routes, *engine])


def _read_reservations(path: Path) -> dict:
    """Reservations are short-lived hints between allocation and `compose up` (the engine's own
    networks are always avoided too), so an unreadable file is dropped, not fatal."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def _locked_reservations():
    path = cache_dir() / "subnet-reservations.json"
    with (cache_dir() / "subnets.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read_reservations(path)
        yield data
        # write then rename: a crash mid-write leaves the old file, never a truncated one
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, indent=1))
        os.replace(scratch, path)


def reserve(project: str, kinds: list[str]) -> list[Subnet]:
    """A subnet per network kind given (wan or lan pool), avoiding engine, host and other runs'
    reservations."""
    routes, engine = checked_routes_and_engine(kinds)
    with _locked_reservations() as reservations:
        now = time.time()
        for subnet, entry in list(reservations.items()):
            if now - entry["at"] > RESERVATION_TTL_S:
                del reservations[subnet]
        taken = [*engine, *routes, *(ipaddress.IPv4Network(s) for s in reservations)]
        subnets = allocate(kinds, taken)
        for subnet in subnets:
            reservations[str(subnet)] = {"project": project, "at": now}
        return subnets


def release(project: str) -> None:
    with _locked_reservations() as reservations:
        for subnet in [s for s, e in reservations.items() if e["project"] == project]:
            del reservations[subnet]
