"""Change a container's network from outside: a short-lived helper joins its network namespace.

Service images stay unprivileged and need no `ip` binary (upstream nim-codex images have none):
the helper (the base image, which carries iproute2) gets NET_ADMIN for one command and is removed.
"""

from __future__ import annotations

import time

import docker
from docker.models.containers import Container

from harness.engine.images import base_image_ref
from harness.errors import EngineError
from harness.render.compose import LABEL_CREATED, LABEL_PROJECT, LABEL_ROLE
from harness.topology.plan import Plan


def run_in_netns(
    target: Container, command: list[str], project: str, net_admin: bool = False, timeout_s: float = 90
) -> str:
    """Run `command` in `target`'s network namespace; returns its output, raises on failure."""
    client = docker.from_env()
    helper = client.containers.run(
        base_image_ref(),
        command,
        network_mode=f"container:{target.id}",
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN", "NET_RAW"] if net_admin else [],
        labels={
            LABEL_PROJECT: project,
            LABEL_ROLE: "helper",
            LABEL_CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        detach=True,
    )
    try:
        status = helper.wait(timeout=timeout_s)["StatusCode"]
        output = helper.logs().decode(errors="replace")
    except Exception as exc:  # a hung helper is reported, then removed
        raise EngineError(f"helper `{' '.join(command)}` in {target.name} did not finish: {exc}") from exc
    finally:
        helper.remove(force=True)
    if status != 0:
        raise EngineError(
            f"helper `{' '.join(command)}` in {target.name} failed ({status}):\n{output[-2000:]}"
        )
    return output


def plumb(plan: Plan, containers: dict[str, Container]) -> None:
    """Idempotent: LAN nodes route via their router; the referee gets its second WAN address."""
    for node in plan.nodes.values():
        if node.gateway and node.name in containers:
            run_in_netns(
                containers[node.name],
                ["ip", "route", "replace", "default", "via", node.gateway],
                plan.project,
                True,
            )
    if plan.stun and plan.stun.name in containers:
        wan = next(n for n in plan.networks.values() if n.kind == "wan")
        prefix = wan.subnet.split("/")[1]
        script = (
            f"dev=$(ip -o -4 addr | awk '/ {plan.stun.ip}\\//{{print $2}}'); "
            f"ip addr show dev $dev | grep -q ' {plan.stun.alt_ip}/' || "
            f"ip addr add {plan.stun.alt_ip}/{prefix} dev $dev"
        )
        run_in_netns(containers[plan.stun.name], ["sh", "-c", script], plan.project, True)


def tcp_connects(source: Container, ip: str, port: int, project: str) -> bool:
    """Does a TCP connection from `source`'s network namespace to ip:port succeed (3 s)?"""
    probe = f"timeout 3 bash -c '</dev/tcp/{ip}/{port}' 2>/dev/null && echo open || echo closed"
    return run_in_netns(source, ["bash", "-c", probe], project).strip().endswith("open")
