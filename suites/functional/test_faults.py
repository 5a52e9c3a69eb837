"""Harness self-tests: crash safety, fail-fast on a crashing node, deadlines on a stalled one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from harness import sweep
from harness.errors import ContainerFailed, WaitTimeout
from harness.testbed import Testbed
from harness.topology.plan import new_project_name

pytestmark = pytest.mark.faults
ONE_NODE = "nodes:\n  codex-1:\n    kind: codex\n"


def _compose_processes(project: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", f"-p {project}"], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if "compose" in line]


def test_sigkill_midway_through_up_then_clean_leaves_nothing() -> None:
    project = new_project_name("killed")
    client = docker.from_env()
    up = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "up", "basic", "--project", project],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    # Kill once the engine holds resources of the run, i.e. truly midway.
    while not any(sweep.leftovers(project, client).values()):
        assert up.poll() is None, "testbed up finished before it could be killed midway"
        assert time.monotonic() < deadline, "testbed up created nothing within 120s"
        time.sleep(0.05)
    up.send_signal(signal.SIGKILL)
    up.wait(timeout=10)
    assert up.returncode == -signal.SIGKILL

    clean = subprocess.run(
        [sys.executable, "-m", "harness.cli", "clean", "--project", project], capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    assert sweep.leftovers(project, client) == {"containers": 0, "networks": 0, "volumes": 0}
    time.sleep(2)  # had a compose child survived the kill, it would now be re-creating resources
    assert sweep.leftovers(project, client) == {"containers": 0, "networks": 0, "volumes": 0}
    assert _compose_processes(project) == [], "compose must die with the harness"
    again = subprocess.run([sys.executable, "-m", "harness.cli", "clean", "--project", project])
    assert again.returncode == 0, "clean is idempotent"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_during_up_tears_down_without_clean(signum: int) -> None:
    project = new_project_name("interrupted")
    up = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "up", "basic", "--project", project],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(sweep.leftovers(project).values()):
            assert up.poll() is None, "testbed up finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        up.send_signal(signum)
        up.wait(timeout=60)

        assert up.returncode == -signum, up.stderr.read()
        assert sweep.leftovers(project) == {"containers": 0, "networks": 0, "volumes": 0}
    finally:  # a failed run must not leave its testbed behind
        if up.poll() is None:
            up.kill()
            up.wait()
        sweep.sweep(project)


def test_a_node_that_crashes_fails_readiness_fast_with_its_logs_and_leaves_nothing(tmp_path: Path) -> None:
    topology = tmp_path / "crashing.yaml"
    topology.write_text(ONE_NODE + "    env:\n      CODEX_STORAGE_QUOTA: plenty\n")
    project = new_project_name("crashing")
    start = time.monotonic()

    with pytest.raises(ContainerFailed) as caught:
        Testbed.up(topology, project=project, deadline_s=120, log=lambda _: None)

    assert time.monotonic() - start < 60, "an exited container must not be waited on until the deadline"
    message = str(caught.value)
    assert "codex-1 is exited" in message
    assert "not a byte size: 'plenty'" in message, "the culprit's last log lines belong in the error"
    assert sweep.leftovers(project) == {"containers": 0, "networks": 0, "volumes": 0}


def test_a_node_that_never_gets_ready_hits_the_deadline_with_its_logs(tmp_path: Path) -> None:
    topology = tmp_path / "stalled.yaml"
    # The API moves elsewhere, so the health probe on /api/codex/v1 never passes.
    topology.write_text(ONE_NODE + "    env:\n      CODEX_API_PREFIX: /elsewhere\n")
    project = new_project_name("stalled")

    # The deadline leaves a loaded CI machine time to start the node (at 8 s one had not logged
    # a line yet, and the last reason was a refused connection, not the probe's answer).
    with pytest.raises(WaitTimeout) as caught:
        Testbed.up(topology, project=project, deadline_s=30, log=lambda _: None)

    message = str(caught.value)
    assert "(deadline 30s) waiting for codex-1 to answer GET http://" in message
    assert "/debug/info: CodexApiError" in message, "the last reason is the probe's failure"
    assert "REST service started" in message, "the stalled node's own log lines are shown"
    assert sweep.leftovers(project) == {"containers": 0, "networks": 0, "volumes": 0}
    assert (Path(os.environ.get("TESTBED_ARTIFACTS_DIR", "artifacts")) / project / "readiness.json").exists()


def test_more_services_than_the_compose_parallel_limit_still_come_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker-compose v1 deadlocked here: each service's thread held a slot of the limit while
    # waiting for its container's thread to get one (harness/engine/compose.py).
    monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", "2")
    topology = tmp_path / "five.yaml"
    topology.write_text("nodes:\n" + "".join(f"  codex-{i}:\n    kind: codex\n" for i in range(1, 6)))
    project = new_project_name("limit")

    with Testbed.up(topology, project=project, deadline_s=120, log=lambda _: None) as testbed:
        assert sorted(testbed.containers()) == [f"codex-{i}" for i in range(1, 6)]
        assert all(testbed.client(f"codex-{i}").peer_id() for i in range(1, 6))
    assert sweep.leftovers(project) == {"containers": 0, "networks": 0, "volumes": 0}
