"""Running Locust headless: on the host, or as a master and N worker containers on a testbed's WAN.

Both ways run the same locustfile (suites/load/locustfile.py; the loadgen image carries a copy)
with the same arguments and write the same reports (<prefix>_stats.csv, <prefix>_stats_history.csv,
<prefix>.html, <prefix>-locust.log), so the gate reads a run the same way whichever produced it.
The configuration travels as JSON in TESTBED_LOAD_CONFIG.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.models.containers import Container

from harness.engine.files import copy_out
from harness.errors import TestbedError, WaitTimeout
from harness.labels import LABEL_NODE, find_network, plan_labels
from harness.paths import REPO_ROOT
from harness.testbed import Testbed
from harness.waits import NotYet, wait_until

LOCUSTFILE = REPO_ROOT / "suites" / "load" / "locustfile.py"
TOOLKIT = REPO_ROOT / "images" / "pyruntime"  # the BlockExchange agent imports testbed_toolkit
GRACE_S = 120  # beyond --run-time: spawning, --stop-timeout, writing reports
MASTER_PORT = 5557
WORKERS_WAIT_S = 60  # how long the master waits for its workers to connect
STATIC_PORT = 8000
STATIC_FILE_BYTES = 1024 * 1024
OUT = "/out"  # the loadgen image's working folder


@dataclass(frozen=True)
class LocustRun:
    prefix: str  # report file prefix
    classes: list[str]
    users: int
    spawn_rate: float
    run_time_s: int

    def args(self, out_dir: str) -> list[str]:
        return [
            "--headless", "--only-summary", "--users", str(self.users), "--spawn-rate", str(self.spawn_rate),
            "--run-time", f"{self.run_time_s}s", "--stop-timeout", "10",
            "--csv", f"{out_dir}/{self.prefix}", "--csv-full-history",
            "--html", f"{out_dir}/{self.prefix}.html",
            "--exit-code-on-error", "0", *self.classes,
        ]  # fmt: skip


def run_on_host(run: LocustRun, config: dict, run_dir: Path) -> None:
    paths = [p for p in (os.environ.get("PYTHONPATH"), str(TOOLKIT)) if p]
    env = {**os.environ, "TESTBED_LOAD_CONFIG": json.dumps(config), "PYTHONPATH": os.pathsep.join(paths)}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *run.args(str(run_dir))]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=run.run_time_s + GRACE_S)
    (run_dir / f"{run.prefix}-locust.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise TestbedError(f"locust ({run.prefix}) failed ({result.returncode}):\n{result.stderr[-2000:]}")


class Fleet:
    """Locust master and workers as containers on the testbed's WAN, so the load comes from inside
    the topology and the generator scales past one process. They carry the testbed's labels, so
    its teardown (or `testbed clean`) removes them even if this process dies; addresses come from
    the top of the WAN subnet, which the plan leaves free."""

    def __init__(self, testbed: Testbed, workers: int, image: str) -> None:
        self.testbed = testbed
        self.workers = workers
        self.image = image
        self.client = docker.from_env()
        wan = next(net for net in testbed.plan.networks.values() if net.kind == "wan")
        self.network = self._docker_network(wan.name)
        self._free = reversed(list(ipaddress.ip_network(wan.subnet).hosts()))

    def _docker_network(self, name: str) -> str:
        found = find_network(self.client, self.testbed.plan.project, name)
        if found is None:
            raise TestbedError(f"{self.testbed.plan.project}: WAN network {name!r} not found")
        return found

    def _start(
        self, role: str, command: list[str], config: dict, entrypoint: list[str] | None = None
    ) -> Container:
        ip = str(next(self._free))
        return self.client.containers.run(
            self.image,
            command,
            entrypoint=entrypoint,
            name=f"{self.testbed.plan.project}-{role}",
            detach=True,
            environment={"TESTBED_LOAD_CONFIG": json.dumps(config)},
            network=self.network,
            networking_config={self.network: self.client.api.create_endpoint_config(ipv4_address=ip)},
            labels={**plan_labels(self.testbed.plan, "loadgen"), LABEL_NODE: role},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
        )

    def run(self, run: LocustRun, config: dict, run_dir: Path) -> None:
        """One distributed run: master and workers start, the master exits when --run-time is
        over, its reports are copied out, every container is removed."""
        started: list[Container] = []
        try:
            master = self._start(
                f"{run.prefix}-master",
                [
                    "--master",
                    "--expect-workers",
                    str(self.workers),
                    "--expect-workers-max-wait",
                    str(WORKERS_WAIT_S),
                    *run.args(OUT),
                ],
                config,
            )
            started.append(master)
            master_ip = self._ip(master)
            deadline = run.run_time_s + WORKERS_WAIT_S + GRACE_S
            for index in range(1, self.workers + 1):
                started.append(
                    self._start(
                        f"{run.prefix}-worker-{index}",
                        ["--worker", "--master-host", master_ip, "--master-port", str(MASTER_PORT)],
                        config,
                    )
                )
            try:
                status = master.wait(timeout=deadline)["StatusCode"]
            except Exception as exc:  # requests' ReadTimeout: the master overran its deadline
                raise WaitTimeout(
                    f"the Locust master ({run.prefix}) did not finish within {deadline} s; "
                    f"last lines:\n{_tail(master)}"
                ) from exc
            for container in started:
                (run_dir / f"{container.labels[LABEL_NODE]}-locust.log").write_bytes(container.logs())
            if status != 0:
                raise TestbedError(f"the Locust master ({run.prefix}) exited with {status}:\n{_tail(master)}")
            copy_out(master, OUT, run_dir)  # the master's report folder
        finally:
            for container in started:
                container.remove(force=True)

    @contextmanager
    def static_server(self) -> Iterator[str]:
        """A trivial static server on the WAN (for the generator's ceiling); yields the file's URL."""
        server = self._start(
            "ceiling-static",
            [
                "-c",
                f"head -c {STATIC_FILE_BYTES} /dev/urandom >blob && exec python -m http.server {STATIC_PORT}",
            ],
            {},
            entrypoint=["sh"],
        )
        try:
            url = f"http://{self._ip(server)}:{STATIC_PORT}/blob"
            wait_until(f"the static server {url}", lambda: _answers(url), 30, culprit=lambda: _tail(server))
            yield url
        finally:
            server.remove(force=True)

    def _ip(self, container: Container) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]


def _answers(url: str) -> bool:
    try:
        requests.head(url, timeout=2).raise_for_status()
    except requests.RequestException as exc:
        raise NotYet(str(exc)) from exc
    return True


def _tail(container: Container, lines: int = 30) -> str:
    return container.logs(tail=lines).decode(errors="replace")
