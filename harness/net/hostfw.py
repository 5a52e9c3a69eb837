"""Host firewall guard: the host never forwards anything off a testbed bridge.

The WAN is docker-`internal`, but LAN bridges cannot be (that drops what their router forwards),
so they have a gateway on the host. A LAN container's default route points at its router and
routers have no default route; this guard makes "nothing leaves the machine" independent of
those routes and of docker's own isolation rules: in DOCKER-USER, traffic entering from a
testbed bridge may only leave through that same bridge (containers on one bridge still talk;
the host still reaches every container, which is not forwarding).
"""

from __future__ import annotations

import shutil
import subprocess

from harness.errors import EngineError
from harness.topology.plan import Plan

CHAIN = "DOCKER-USER"


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("iptables") is None:
        raise EngineError("iptables is not installed on the host; NAT topologies need it (make setup)")
    result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise EngineError(f"iptables {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _comment(project: str) -> str:
    return f"testbed:{project}"


def available() -> bool:
    return shutil.which("iptables") is not None and _iptables("-S", CHAIN, check=False).returncode == 0


def isolate(plan: Plan) -> None:
    for network in plan.networks.values():
        if network.bridge:
            _iptables(
                "-I", CHAIN, "-i", network.bridge, "!", "-o", network.bridge, "-j", "DROP",
                "-m", "comment", "--comment", _comment(plan.project),
            )  # fmt: skip


def rules(project: str | None = None) -> list[str]:
    """This project's guard rules (every testbed's when None), as `iptables -S` lines."""
    if shutil.which("iptables") is None:
        return []
    listing = _iptables("-S", CHAIN, check=False).stdout.splitlines()
    marker = _comment(project) if project else "testbed:"
    return [line for line in listing if marker in line and line.startswith("-A ")]


def release(project: str | None = None) -> int:
    removed = 0
    for line in rules(project):
        spec = line.split()[2:]  # drop "-A DOCKER-USER"
        # `iptables -S` quotes the comment; subprocess needs it bare
        _iptables("-D", CHAIN, *[part.strip('"') for part in spec], check=False)
        removed += 1
    return removed
