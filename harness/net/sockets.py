"""A container's TCP connections as its kernel sees them: who is connected to whom, and the RTT.

The same view for every implementation, read from outside the node: a helper joins the
container's network namespace and runs `ss` (harness.net.plumbing), so nothing depends on what
a node chooses to report about its connections. A libp2p connection over TCP is one socket;
the kernel's smoothed RTT of that socket is the path's round-trip time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docker.models.containers import Container

from harness.net.plumbing import run_in_netns

_RTT = re.compile(r"\brtt:([\d.]+)/")


@dataclass(frozen=True)
class TcpConnection:
    local: str  # ip:port
    remote: str  # ip:port
    rtt_ms: float | None  # the kernel's smoothed RTT, None before it has a sample

    @property
    def remote_ip(self) -> str:
        return _split(self.remote)[0]

    @property
    def local_port(self) -> int:
        return int(_split(self.local)[1])


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]").removeprefix("::ffff:")  # a v4 peer of a dual-stack socket
    return host, port


def parse(output: str) -> list[TcpConnection]:
    """`ss -tniHO state established`: one line per socket, `Recv-Q Send-Q local peer info…`."""
    connections = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        rtt = _RTT.search(line)
        connections.append(TcpConnection(fields[2], fields[3], float(rtt.group(1)) if rtt else None))
    return connections


def established(container: Container, project: str) -> list[TcpConnection]:
    """Every established TCP connection in the container's network namespace."""
    return parse(run_in_netns(container, ["ss", "-tniHO", "state", "established"], project))
