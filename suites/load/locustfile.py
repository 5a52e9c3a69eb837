"""Locust users for the Codex REST API, driven by `testbed load` (see harness/experiments/load.py).

The run's configuration (nodes, upload sizes, which nodes download) comes as JSON in the
TESTBED_LOAD_CONFIG environment variable, the same way on the host and in a worker container.
Request names: `upload`, `ttfb` and `download` (time to first byte and full body of a network
download, separately), `download@<node>` (per-node throughput).
Every download fetches a dataset the downloading node does not have yet, so it always crosses
the network; uploaders keep the pool of datasets fed.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import gevent.event
import requests
from locust import User, constant, events, task
from locust.runners import MasterRunner

CONFIG = json.loads(os.environ["TESTBED_LOAD_CONFIG"])
NODES: dict[str, str] = CONFIG["nodes"]
SIZES, SIZE_WEIGHTS = zip(*CONFIG["sizes"], strict=True) if CONFIG["sizes"] else ((), ())
DOWNLOADERS = CONFIG.get("downloaders_on") or list(NODES)
POOL: deque[tuple[str, str]] = deque(maxlen=500)  # (cid, origin node), newest last
FETCHED: dict[str, set[str]] = {node: set() for node in NODES}  # cids each node has
TIMEOUT_S = 120


def record(kind: str, name: str, start: float, length: int, exc: Exception | None = None) -> None:
    events.request.fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - start) * 1000,
        response_length=length,
        exception=exc,
        context={},
    )


class CodexUser(User):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.session = requests.Session()

    def upload(self) -> None:
        node = random.choice(list(NODES))
        size = random.choices(SIZES, SIZE_WEIGHTS)[0]
        start = time.perf_counter()
        try:
            response = self.session.post(
                f"{NODES[node]}/data",
                data=random.randbytes(size),
                headers={"Content-Type": "application/octet-stream"},
                timeout=TIMEOUT_S,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            record("POST", "upload", start, 0, exc)
            return
        record("POST", "upload", start, size)
        POOL.append((response.text.strip(), node))
        FETCHED[node].add(response.text.strip())

    def download(self, newest_first: bool) -> None:
        node = random.choice(DOWNLOADERS)
        candidates = [cid for cid, origin in POOL if cid not in FETCHED[node] and origin != node]
        if not candidates:
            time.sleep(0.1)
            return
        cid = candidates[-1] if newest_first else random.choice(candidates)
        FETCHED[node].add(cid)
        start = time.perf_counter()
        try:
            with self.session.get(
                f"{NODES[node]}/data/{cid}/network/stream", stream=True, timeout=TIMEOUT_S
            ) as r:
                r.raise_for_status()
                chunks = r.iter_content(64 * 1024)
                received = len(next(chunks, b""))
                record("GET", "ttfb", start, 0)
                received += sum(len(chunk) for chunk in chunks)
        except (requests.RequestException, StopIteration) as exc:
            record("GET", "download", start, 0, exc)
            return
        record("GET", "download", start, received)
        record("GET", f"download@{node}", start, received)


class Uploader(CodexUser):
    @task
    def upload_one(self) -> None:
        self.upload()


class Downloader(CodexUser):
    @task
    def download_one(self) -> None:
        self.download(newest_first=False)


class Swarm(CodexUser):
    """Many of these fetch the newest dataset from different nodes at once."""

    @task
    def download_newest(self) -> None:
        self.download(newest_first=True)


class Mixed(CodexUser):
    @task(1)
    def upload_one(self) -> None:
        self.upload()

    @task(3)
    def download_one(self) -> None:
        self.download(newest_first=False)


class CeilingUser(User):
    """The generator's own ceiling: fetch a static file from a trivial local server."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.session = requests.Session()

    @task
    def fetch(self) -> None:
        start = time.perf_counter()
        try:
            body = self.session.get(CONFIG["ceiling_url"], timeout=TIMEOUT_S).content
        except requests.RequestException as exc:
            record("GET", "ceiling", start, 0, exc)
            return
        record("GET", "ceiling", start, len(body))


class BlockExchange(User):
    """Loads /codex/blockexc/1.0.0 itself, without REST: want-have (presence latency) and
    want-block (delivery latency, proof verified) for blocks of a dataset on a node, through
    the trio agent in suites/load/bxagent.py (trio cannot run inside Locust's gevent)."""

    wait_time = constant(0)
    BLOCKS = 16  # the dataset each user uploads: 1 MiB

    def on_start(self) -> None:
        # A worker may be told to spawn users while its agent is still starting (init below).
        if not AGENT_READY.wait(timeout=AGENT_START_S):
            raise RuntimeError(f"no BlockExchange agent after {AGENT_START_S} s")
        self.agent = socket.create_connection(("127.0.0.1", AGENT["port"]))
        self.replies = self.agent.makefile("rb")
        self.node = random.choice(list(NODES))
        session = requests.Session()
        cid = session.post(
            f"{NODES[self.node]}/data",
            data=random.randbytes(self.BLOCKS * 64 * 1024),
            headers={"Content-Type": "application/octet-stream"},
            timeout=TIMEOUT_S,
        ).text.strip()
        items = session.get(f"{NODES[self.node]}/data", timeout=TIMEOUT_S).json()["content"]
        self.tree = next(item["manifest"]["treeCid"] for item in items if item["cid"] == cid)

    def ask(self, op: str) -> None:
        peer = CONFIG["bx_peers"][self.node]
        request = {"op": op, **peer, "tree": self.tree, "index": random.randrange(self.BLOCKS)}
        start = time.perf_counter()
        self.agent.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(self.replies.readline())
        failed = None if answer.get("ok") else RuntimeError(answer.get("error", f"{op} failed: {answer}"))
        events.request.fire(
            request_type="BX",
            name=op.replace("_", "-"),
            response_time=answer.get("ms", (time.perf_counter() - start) * 1000),
            response_length=answer.get("bytes", 0),
            exception=failed,
            context={},
        )

    @task
    def want_have(self) -> None:
        self.ask("want_have")

    @task
    def want_block(self) -> None:
        self.ask("want_block")


AGENT: dict = {}  # the BlockExchange agent of this process: {"process": Popen, "port": int}
AGENT_READY = gevent.event.Event()
AGENT_START_S = 60


@events.init.add_listener
def start_agent(environment, **_kwargs) -> None:
    """Each process that runs users (local or worker, never the master) gets its own agent."""
    if "BlockExchange" not in CONFIG.get("mix", {}) or isinstance(environment.runner, MasterRunner):
        return
    agent = Path(__file__).with_name("bxagent.py")
    process = subprocess.Popen([sys.executable, str(agent)], stdout=subprocess.PIPE)
    line = process.stdout.readline() if process.stdout else b""
    if not line:
        raise RuntimeError(f"the BlockExchange agent ({agent}) did not start; see its stderr")
    AGENT.update(process=process, port=json.loads(line)["port"])
    AGENT_READY.set()


@events.quit.add_listener
def stop_agent(**_kwargs) -> None:
    if process := AGENT.get("process"):
        process.terminate()
        process.wait(timeout=10)


USER_CLASSES = {cls.__name__: cls for cls in (Uploader, Downloader, Swarm, Mixed, BlockExchange)}
for _name, _weight in CONFIG.get("mix", {}).items():
    USER_CLASSES[_name].weight = _weight
