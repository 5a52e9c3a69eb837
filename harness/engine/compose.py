"""Compose CLI portability: `docker compose` (v2 plugin) when present, else `docker-compose` (v1).

Both are driven with an explicit project name (`-p`) and file (`-f`); containers are found by
labels afterwards, never by name (v1 names them proj_svc_1, v2 proj-svc-1). Rendered files avoid
every key one flavour rejects (docs/architecture.md, "Compose v1 and v2").
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from functools import cache
from pathlib import Path

from harness.errors import EngineError

PR_SET_PDEATHSIG = 1


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
    project: str, compose_file: Path, *args: str, timeout_s: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [*compose_command(), "-p", project, "-f", str(compose_file), *args]
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            preexec_fn=_die_with_parent,
            cwd=compose_file.parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout_s:.0f}s") from exc
    if check and result.returncode != 0:
        raise EngineError(f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def up(project: str, compose_file: Path, timeout_s: float = 300) -> None:
    run_compose(project, compose_file, "up", "-d", "--no-build", timeout_s=timeout_s)


def down(project: str, compose_file: Path, timeout_s: float = 120) -> None:
    run_compose(project, compose_file, "down", "-v", "--remove-orphans", "-t", "10", timeout_s=timeout_s)


def config_check(compose_file: Path) -> str:
    """`compose config -q`: the CLI's own schema check of a rendered file; returns stderr if it fails."""
    result = run_compose("tb-config-check", compose_file, "config", "-q", check=False, timeout_s=60)
    return "" if result.returncode == 0 else result.stderr
