"""Compose CLI portability: `docker compose` (v2 plugin) when present, else `docker-compose` (v1).

Both are driven with an explicit project name (`-p`) and file (`-f`); containers are found by
labels afterwards, never by name (v1 names them proj_svc_1, v2 proj-svc-1). Rendered files avoid
every key one flavour rejects (docs/architecture.md, "Compose v1 and v2").
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import yaml

from harness.errors import EngineError

PR_SET_PDEATHSIG = 1
# docker-compose v1's COMPOSE_PARALLEL_LIMIT when unset (compose/const.py PARALLEL_LIMIT).
V1_PARALLEL_LIMIT = 64


def _die_with_parent() -> None:
    """Runs in the child: if the harness is SIGKILLed mid-`up`, compose dies too (no orphans)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@cache
def compose_command() -> tuple[str, ...]:
    """The compose CLI to use; `TESTBED_COMPOSE` overrides (e.g. "docker-compose")."""
    if override := os.environ.get("TESTBED_COMPOSE"):
        return tuple(override.split())
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise EngineError(
        "neither `docker compose` (v2) nor `docker-compose` (v1) is installed; run `make setup`"
    )


def compose_version() -> str:
    result = subprocess.run([*compose_command(), "version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0] if result.returncode == 0 else "unknown"


def run_compose(
    project: str,
    compose_file: Path,
    *args: str,
    timeout_s: float = 300,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`env` (default: ours) is given COMPOSE_HTTP_TIMEOUT (see http_timeout_env)."""
    cmd = [*compose_command(), "-p", project, "-f", str(compose_file), *args]
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            preexec_fn=_die_with_parent,
            cwd=compose_file.parent,
            env=http_timeout_env(timeout_s, os.environ if env is None else env),
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout_s:.0f}s") from exc
    if check and result.returncode != 0:
        raise EngineError(f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def http_timeout_env(timeout_s: float, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with COMPOSE_HTTP_TIMEOUT at the command's own deadline, unless the user set it.

    docker-compose v1 gives up on one engine request after 60 s. With 128 nodes booting on two
    cores, the engine answered some container starts later than that: v1 reported 98 of 128 as
    failed (a read timeout) while every one of them ran. The whole command's deadline bounds it
    instead.
    """
    return {"COMPOSE_HTTP_TIMEOUT": str(math.ceil(timeout_s)), **environ}


def service_count(compose_file: Path) -> int:
    return len((yaml.safe_load(compose_file.read_text()) or {}).get("services") or {})


def parallel_limit_env(services: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for `up`, with COMPOSE_PARALLEL_LIMIT raised by the number of services.

    docker-compose v1 (1.29, compose/parallel.py) starts each service in a thread that holds one
    of the limit's slots while it creates the service's container in a second thread, which needs
    a slot of its own. With more services than slots, the service threads can take every slot
    and wait for ever: measured here, a 128-service `up -d` stopped after 47 containers, and
    COMPOSE_PARALLEL_LIMIT=8 stopped a 100-service one after 8. Raised by the number of services,
    the limit leaves container creation the slots it would have had (the user's value, or v1's
    64). v2 does not nest its threads, and a limit this high changes nothing there.
    """
    value = environ.get("COMPOSE_PARALLEL_LIMIT", str(V1_PARALLEL_LIMIT))
    if not value.isdigit() or int(value) < 1:
        raise EngineError(f"COMPOSE_PARALLEL_LIMIT must be a positive integer, not {value!r}")
    containers = int(value)
    return {**environ, "COMPOSE_PARALLEL_LIMIT": str(services + containers)}


def up(project: str, compose_file: Path, timeout_s: float = 300) -> None:
    env = parallel_limit_env(service_count(compose_file), os.environ)
    run_compose(project, compose_file, "up", "-d", "--no-build", timeout_s=timeout_s, env=env)


def down(project: str, compose_file: Path, timeout_s: float = 120) -> None:
    run_compose(project, compose_file, "down", "-v", "--remove-orphans", "-t", "10", timeout_s=timeout_s)


def config_check(compose_file: Path) -> str:
    """`compose config -q`: the CLI's own schema check of a rendered file; returns stderr if it fails."""
    result = run_compose("tb-config-check", compose_file, "config", "-q", check=False, timeout_s=60)
    return "" if result.returncode == 0 else result.stderr
