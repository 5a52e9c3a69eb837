"""A BlockExchange probe on the host: the load suite's agent (suites/load/bxagent.py, its own
libp2p identity) asked one request at a time, for experiments that time single requests.

    with Probe() as probe:
        probe.ask("want_block", bx_peer(testbed, "seed"), tree, 3)   # {"ok": True, "ms": ..}
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from types import TracebackType

from harness.clients.codex import dialable_addresses
from harness.errors import TestbedError
from harness.paths import REPO_ROOT
from harness.testbed import Testbed

AGENT = REPO_ROOT / "suites" / "load" / "bxagent.py"
TOOLKIT = REPO_ROOT / "images" / "pyruntime"  # the agent imports testbed_toolkit
START_S = 60
ANSWER_S = 60  # beyond the agent's own 30 s per request


def bx_peer(testbed: Testbed, node: str) -> dict:
    """How the agent reaches a node: its peer id and the addresses it announces."""
    info = testbed.client(node).debug_info()
    return {"peer": info["id"], "addrs": dialable_addresses(info)}


def tree_of(testbed: Testbed, node: str, cid: str) -> str:
    """The dataset's tree CID (what BlockExchange addresses its blocks by), from `GET /data`."""
    found = [item["manifest"]["treeCid"] for item in testbed.client(node).list() if item["cid"] == cid]
    if not found:
        raise TestbedError(f"{node}: dataset {cid} is not listed in its GET /data")
    return found[0]


class Probe:
    def __init__(self) -> None:
        paths = [p for p in (os.environ.get("PYTHONPATH"), str(TOOLKIT)) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(
            [sys.executable, str(AGENT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        port = self._port()
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
        self.replies = self.connection.makefile("rb")

    def _port(self) -> int:
        """The agent's first line says where it listens."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_S)
        if ready and (line := self.process.stdout.readline()):
            return int(json.loads(line)["port"])
        self.close()
        stderr = self.process.stderr.read().decode(errors="replace")[-2000:] if self.process.stderr else ""
        raise TestbedError(f"the BlockExchange agent ({AGENT}) did not start within {START_S} s:\n{stderr}")

    def ask(self, op: str, peer: dict, tree: str, index: int) -> dict:
        """One `want_have` or `want_block` of block `index` of `tree`; the agent's answer."""
        request = {"op": op, **peer, "tree": tree, "index": index}
        self.connection.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(self.replies.readline() or b"{}")
        if not answer.get("ok"):
            raise TestbedError(f"BlockExchange {op} of block {index}: {answer.get('error', answer)}")
        return answer

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Probe:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.connection.close()
        self.close()
