"""Make sure a Docker engine answers; on Debian as root, install and start one if not.

A fresh Debian machine has at most the docker client. We install `docker.io`, `docker-compose`
and `iptables` with apt, start `dockerd` in the background (its log goes to the project cache)
and wait for it with a deadline. Anywhere else we only say exactly what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
from docker.errors import DockerException

from harness.errors import EngineError
from harness.paths import cache_dir

APT_PACKAGES = ("docker.io", "docker-compose", "iptables", "debootstrap")
ENGINE_START_DEADLINE_S = 90.0


def engine_answers() -> bool:
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return True
    except DockerException:
        return False


def _is_debian_root() -> bool:
    return Path("/etc/debian_version").exists() and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _missing_tools() -> list[str]:
    needed = {"dockerd": "docker.io", "iptables": "iptables", "debootstrap": "debootstrap"}
    missing = [pkg for tool, pkg in needed.items() if shutil.which(tool) is None]
    if shutil.which("docker-compose") is None and not _has_compose_v2():
        missing.append("docker-compose")
    return missing


def _has_compose_v2() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return result.returncode == 0


def install_packages(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def start_dockerd() -> Path:
    """Start dockerd detached from us; returns its log file."""
    log = cache_dir() / "dockerd.log"
    with log.open("ab") as out:
        subprocess.Popen(
            ["dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return log


def wait_for_engine(log: Path, deadline_s: float = ENGINE_START_DEADLINE_S) -> None:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if engine_answers():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    raise EngineError(
        f"dockerd did not answer within {deadline_s:.0f}s. Last lines of {log}:\n" + "\n".join(tail)
    )


def ensure_engine() -> str:
    """Return a one-line account of what was done; raise EngineError with what is missing."""
    if engine_answers() and not _missing_tools():
        return "engine: already answering"
    if not _is_debian_root():
        missing = _missing_tools() or ["a running Docker engine (start dockerd)"]
        raise EngineError(
            "No usable Docker engine. Missing: " + ", ".join(missing) + ". "
            "On Debian/Ubuntu as root `make setup` installs them; elsewhere install Docker Engine, "
            "the compose plugin and debootstrap, and start the engine."
        )
    done = []
    timings: dict[str, float] = {}
    missing = _missing_tools()
    if missing:
        start = time.monotonic()
        install_packages(missing)
        timings["install_s"] = round(time.monotonic() - start, 1)
        done.append(f"installed {' '.join(missing)} in {timings['install_s']}s")
    if not engine_answers():
        start = time.monotonic()
        log = start_dockerd()
        wait_for_engine(log)
        timings["start_s"] = round(time.monotonic() - start, 1)
        done.append(f"started dockerd in {timings['start_s']}s (log: {log})")
    if timings:
        # `make bench` reports the cold engine cost from here; it cannot restart a shared engine.
        (cache_dir() / "engine-timings.json").write_text(json.dumps(timings))
    return "engine: " + ", ".join(done) if done else "engine: already answering"
