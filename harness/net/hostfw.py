"""Host firewall guard: the host never forwards anything off a testbed bridge.

The WAN is docker-`internal`, but LAN bridges cannot be (that drops what their router forwards),
so they have a gateway on the host. A LAN container's default route points at its router and
routers have no default route; this guard makes "nothing leaves the machine" independent of
those routes and of docker's own isolation rules: in DOCKER-USER, traffic entering from a
testbed bridge may only leave through that same bridge (containers on one bridge still talk;
the host still reaches every container, which is not forwarding).
"""

from __future__ import annotations

import shlex
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


def rule_comment(spec: list[str]) -> str | None:
    """The `--comment` of one rule, given as `iptables -S` words."""
    for i, word in enumerate(spec[:-1]):
        if word == "--comment":
            return spec[i + 1]
    return None


def owned_by(spec: list[str], project: str | None) -> bool:
    """Whether a rule is `project`'s guard (any testbed's when None): the comment must match
    exactly, so `tb` never reaches `tb-basic-1a2b3c`."""
    comment = rule_comment(spec)
    if comment is None:
        return False
    return comment.startswith("testbed:") if project is None else comment == _comment(project)


def rules(project: str | None = None) -> list[list[str]]:
    """This project's guard rules (every testbed's when None), each as the words of its
    `iptables -S` line after `-A DOCKER-USER`."""
    if shutil.which("iptables") is None:
        return []
    listing = _iptables("-S", CHAIN, check=False).stdout.splitlines()
    # shlex undoes the quoting iptables puts around a comment
    specs = [shlex.split(line) for line in listing if line.startswith(f"-A {CHAIN} ")]
    return [spec[2:] for spec in specs if owned_by(spec[2:], project)]


def release(project: str | None = None) -> int:
    removed = 0
    for spec in rules(project):
        _iptables("-D", CHAIN, *spec, check=False)
        removed += 1
    return removed
