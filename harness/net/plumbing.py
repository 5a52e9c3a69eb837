"""Change a container's network from outside: a short-lived helper joins its network namespace.

Service images stay unprivileged and need no `ip` binary (upstream nim-codex images have none):
the helper (the base image, which carries iproute2) gets NET_ADMIN for one command and is removed.
A link with delay, jitter, loss or reordering on a kernel without netem gets the one long-lived
helper: its link stage (images/linkstage, docs/links.md), which lives as long as the node's
namespace and goes with the project's teardown.
"""

from __future__ import annotations

import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from docker.models.containers import Container

from harness.errors import EngineError, TopologyError
from harness.imagerefs import base_image_ref
from harness.labels import LABEL_NODE, plan_labels, project_filter, resource_labels
from harness.topology.model import Link, Shaping, Topology
from harness.topology.plan import Plan
from harness.waits import wait_until


def start_helper(
    target: Container,
    command: list[str],
    labels: dict[str, str],
    caps: tuple[str, ...] = (),
    image: str | None = None,
    client: docker.DockerClient | None = None,
) -> Container:
    """A detached helper in `target`'s network namespace: every capability dropped but `caps`, no
    new privileges, the base image unless `image` is given."""
    return (client or docker.from_env()).containers.run(
        image or base_image_ref(),
        command,
        network_mode=f"container:{target.id}",
        cap_drop=["ALL"],
        cap_add=list(caps),
        security_opt=["no-new-privileges:true"],
        labels=labels,
        detach=True,
    )


def run_in_netns(
    target: Container,
    command: list[str],
    project: str,
    net_admin: bool = False,
    timeout_s: float = 90,
    client: docker.DockerClient | None = None,
) -> str:
    """Run `command` in `target`'s network namespace; returns its output, raises on failure.
    `client` is the engine to start the helper on (the local one unless given: tests fake it)."""
    caps = ("NET_ADMIN",) if net_admin else ()
    helper = start_helper(target, command, resource_labels(project, "helper"), caps, client=client)
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


def dev_of(ip: str) -> str:
    """Shell: set $dev to the interface holding `ip` (docker does not keep interface order)."""
    return rf"dev=$(ip -o -4 addr | awk '/ {ip}\//{{print $2}}')"


TC_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def _rate_bps(rate: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", rate).groups()  # type: ignore[union-attr]
    return float(number) * TC_UNITS[unit]


def _qdiscs(dev: str, shaping: Shaping, netem: bool) -> list[str]:
    """tc commands shaping one direction on `dev`: netem for its conditions where the kernel has
    it (elsewhere a link stage holds the packets), then tbf for its rate."""
    commands = [f"tc qdisc del dev {dev} root 2>/dev/null || true"]
    parent = "root"
    if netem and shaping.conditioned:
        delay = f"delay {shaping.delay_ms or 0}ms" + (f" {shaping.jitter_ms}ms" if shaping.jitter_ms else "")
        delay += f" loss {shaping.loss_pct}%" if shaping.loss_pct else ""
        delay += f" reorder {shaping.reorder_pct}%" if shaping.reorder_pct else ""
        commands.append(f"tc qdisc add dev {dev} root handle 1: netem {delay}")
        parent = "parent 1:"
    if shaping.rate:
        burst = max(16384, int(_rate_bps(shaping.rate) / 8 / 100))  # 10 ms worth, at least 16 KiB
        commands.append(
            f"tc qdisc add dev {dev} {parent} handle 2: tbf rate {shaping.rate} burst {burst} latency 200ms"
        )
    return commands


def shape(container: Container, ip: str, link: Link, project: str, netem: bool) -> None:
    """Shape a node's link: `up` on its interface's egress, `down` on an ifb its ingress is
    redirected to. Without netem the qdiscs carry the rates only (a link stage the conditions)."""
    script = [
        "set -e",
        dev_of(ip),
        "ip link show ifb0 >/dev/null 2>&1 || ip link add ifb0 type ifb",
        "ip link set ifb0 up",
        "tc qdisc del dev $dev ingress 2>/dev/null || true",
        "tc qdisc add dev $dev handle ffff: ingress",
        "tc filter add dev $dev parent ffff: protocol all u32 match u32 0 0"
        " action mirred egress redirect dev ifb0",
        *_qdiscs("$dev", link.up, netem),
        *_qdiscs("ifb0", link.down, netem),
    ]
    run_in_netns(container, ["sh", "-c", "\n".join(script)], project, net_admin=True)


def netem_available(container: Container, project: str) -> bool:
    """Can this kernel emulate delay and loss? (Some VM kernels are built without sch_netem.)
    `TESTBED_LINK_STAGE=1` answers no, so the link stages run where netem exists too."""
    if os.environ.get("TESTBED_LINK_STAGE") == "1":
        return False
    probe = "ip link add tbprobe type dummy && tc qdisc add dev tbprobe root netem delay 1ms && echo yes"
    try:
        return (
            run_in_netns(container, ["sh", "-c", probe + " || echo no"], project, True)
            .strip()
            .endswith("yes")
        )
    finally:
        run_in_netns(container, ["sh", "-c", "ip link del tbprobe 2>/dev/null; true"], project, True)


ALLOWED_CONGESTION = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")


def check_tcp_congestion(topology: Topology) -> None:
    """A container may make only the kernel's *allowed* congestion controls its default (the
    kernel refuses the others in a network namespace of its own): say so before anything is
    created. (Where the engine's kernel is not this host's, the file is absent: no check.)"""
    wanted = topology.tcp_congestion
    if not wanted or not ALLOWED_CONGESTION.exists():
        return
    allowed = ALLOWED_CONGESTION.read_text().split()
    if wanted not in allowed:
        raise TopologyError(
            topology.source,
            "tcp_congestion",
            f"{wanted} is not one a container may choose on this kernel (allowed: {', '.join(allowed)}); "
            f"the host's administrator can add it: sysctl net.ipv4.tcp_allowed_congestion_control",
        )


def _link_arg(shaping: Shaping) -> str:
    values = (shaping.delay_ms, shaping.jitter_ms, shaping.loss_pct, shaping.reorder_pct)
    return ":".join(f"{value or 0:g}" for value in values)


def link_stage_command(ip: str, link: Link, seed: int) -> list[str]:
    """The link stage's command line: each conditioned direction as DELAY:JITTER:LOSS:REORDER."""
    directions = [
        (name, shaping) for name, shaping in (("up", link.up), ("down", link.down)) if shaping.conditioned
    ]
    return [
        "link-stage",
        ip,
        *(f"{name}={_link_arg(shaping)}" for name, shaping in directions),
        "--seed",
        str(seed),
    ]


def link_stage_seed(plan: Plan, node: str) -> int:
    """Each node's stage draws its own numbers, the same in every run of the same topology seed."""
    return zlib.crc32(f"{plan.seed}:{node}".encode())


LINK_STAGE_DEADLINE_S = 30.0


def start_link_stage(
    plan: Plan, node: str, target: Container, client: docker.DockerClient | None = None
) -> Container:
    """(Re)start the link stage of `node`: a container in its network namespace (NET_ADMIN for
    the queue and its rules, NET_RAW for the raw socket the `up` copies leave by) that holds
    packets for the node's link conditions. Returns once its queues are bound and rules set."""
    client = client or docker.from_env()
    name = f"link-stage-{node}"
    for old in client.containers.list(
        all=True, filters={"label": [f"{LABEL_NODE}={name}", project_filter(plan.project)["label"]]}
    ):
        old.remove(force=True)  # a restarted node has a new namespace: the old stage holds the gone one
    stage = start_helper(
        target,
        link_stage_command(plan.nodes[node].ip, plan.nodes[node].link, link_stage_seed(plan, node)),  # type: ignore[arg-type]
        plan_labels(plan, "link-stage") | {LABEL_NODE: name},
        ("NET_ADMIN", "NET_RAW"),
        image=plan.link_stage_image,
        client=client,
    )

    def bound() -> bool:  # it prints its conditions once its queues are bound and rules set
        stage.reload()
        if stage.status == "exited":
            raise EngineError(
                f"the link stage of {node} exited:\n{stage.logs().decode(errors='replace')[-2000:]}"
            )
        return b"link-stage: " in stage.logs()

    wait_until(
        f"the link stage of {node} to bind its queues",
        bound,
        LINK_STAGE_DEADLINE_S,
        interval_s=0.1,
        culprit=lambda: stage.logs().decode(errors="replace")[-2000:],
    )
    return stage


def wan_only(plan: Plan) -> list[str]:
    """The services that sit on the WAN alone. Everything they talk to is on their own subnet
    (and the host reaches them on it), so they need no default route: plumbing removes docker's,
    and nothing they send can head off the bridge even without the host firewall guard."""
    names = [peer.name for peer in [*plan.nodes.values(), *plan.status.values()] if not peer.gateway]
    names += [*plan.relays, *([plan.stun.name] if plan.stun else [])]
    return names


def route_scripts(plan: Plan) -> dict[str, list[str]]:
    """Per container, the shell lines that set its routes (and the referee's second address)."""
    scripts: dict[str, list[str]] = {
        name: ["ip route del default 2>/dev/null || true"] for name in wan_only(plan)
    }
    for peer in [*plan.nodes.values(), *plan.status.values()]:
        if peer.gateway:
            scripts[peer.name] = [f"ip route replace default via {peer.gateway}"]
    if plan.stun:
        wan = next(n for n in plan.networks.values() if n.kind == "wan")
        prefix = wan.subnet.split("/")[1]
        scripts[plan.stun.name].append(
            f"{dev_of(plan.stun.ip)}; "
            f"ip addr show dev $dev | grep -q ' {plan.stun.alt_ip}/' || "
            f"ip addr add {plan.stun.alt_ip}/{prefix} dev $dev"
        )
    return scripts


ROUTE_HELPERS_AT_ONCE = 4  # each helper is a container start: the engine, not the CPU, is the limit


def plumb(plan: Plan, containers: dict[str, Container]) -> None:
    """Idempotent: LAN nodes route via their router, WAN services have no default route, the
    referee gets its second WAN address, shaped links get their qdiscs."""
    jobs = [(containers[name], lines) for name, lines in route_scripts(plan).items() if name in containers]
    with ThreadPoolExecutor(ROUTE_HELPERS_AT_ONCE) as pool:
        # list(): the first helper that failed raises here
        list(
            pool.map(
                lambda job: run_in_netns(
                    job[0], ["sh", "-c", "set -e\n" + "\n".join(job[1])], plan.project, True
                ),
                jobs,
            )
        )
    shaped = [n for n in plan.nodes.values() if n.link and n.name in containers]
    conditioned = [n for n in shaped if n.link and n.link.conditioned]
    netem = bool(conditioned) and netem_available(containers[conditioned[0].name], plan.project)
    for node in shaped:
        shape(containers[node.name], node.ip, node.link, plan.project, netem)  # type: ignore[arg-type]
    if not netem:
        for node in conditioned:
            start_link_stage(plan, node.name, containers[node.name])


def tcp_connects(source: Container, ip: str, port: int, project: str) -> bool:
    """Does a TCP connection from `source`'s network namespace to ip:port succeed (3 s)?"""
    probe = f"timeout 3 bash -c '</dev/tcp/{ip}/{port}' 2>/dev/null && echo open || echo closed"
    return run_in_netns(source, ["bash", "-c", probe], project).strip().endswith("open")
