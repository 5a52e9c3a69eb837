"""Faults a scenario puts on its timeline, done to a running testbed from outside its services.

Routers are changed with `docker exec` (they hold NET_ADMIN already); nodes and relays through a
short-lived helper in their network namespace (harness.net.plumbing), or through the engine
(kill, pause, restart). Every fault records its begin and end on the timeline, and a router
fault keeps the router's conntrack table before and after it as evidence.

What each one does, and what it stands for:
- `partition {between: [A, B]}`: every member of A drops all traffic to and from where it sees
  each member of B (a NATed node is seen as its router's WAN address), and the other way round;
  `heal` removes every partition.
- `link_flap {node, down_s}`: the node's interface goes down for down_s, then its routes and
  shaping come back (a Wi-Fi drop, a cable pulled).
- `nat_flush {router}`: the router forgets every mapping (conntrack flushed): inbound packets
  of existing flows find no mapping until the inside sends again.
- `router_reboot {router, down_s}`: rules and conntrack gone, nothing forwarded for down_s,
  then the NAT profile's rules again on an empty table.
- `nat_rebind {router}`: existing mappings move to new external ports (outbound flows are
  translated to another port range from now on, and the table is flushed), as a carrier NAT
  that rebinds.
- `mapping_timeout {router, tcp_s, udp_s}`: from now on the router keeps an idle mapping only
  this long (an nftables conntrack timeout policy on every flow it tracks: TCP established, UDP
  both ways); the table is flushed, so existing flows come back under the policy when the inside
  sends next (inbound packets before that are dropped, as after `nat_flush`).
- `address_change {router}`: the router's uplink address changes, as a home line's after the
  provider reassigns it: the old address is gone, the new one (from the top of the uplink's
  subnet, below what the load fleet uses) translates every flow from now on, the table is
  flushed. The harness's plan keeps the planned address: later partitions and the sampler's
  direct-connection check still know the router by it.
- `conntrack_full {router, for_s}`: new flows are dropped (for for_s, or to the end), existing
  ones go on — what a full table does (the kernel's "nf_conntrack: table full, dropping
  packet"); emulated with a conntrack-state rule: the table's size is the host's, not the router's.
- `kill {target}` (SIGKILL), `pause {target, for_s}` (frozen, its sockets open), `restart
  {target}` (stopped, started; a node is back when it answers, announces and holds its
  reservation again): a node or a relay.
- `capture {router, seconds}`: a pcap of both router legs for the next `seconds`, while the
  timeline goes on (a helper with NET_RAW, and SETUID/SETGID for tcpdump's user switch).
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.models.containers import Container

from harness.engine.files import copy_out
from harness.errors import EngineError
from harness.labels import resource_labels
from harness.net.plumbing import dev_of, plumb, run_in_netns, start_helper
from harness.testbed import Testbed
from harness.topology.plan import RouterPlan
from harness.waits import NotYet, wait_until

from .timeline import Timeline

PARTITION_CHAIN = "TESTBED-PARTITION"
CAPTURE = "/tmp/capture.pcap"
TIMED_OUT = 124  # `timeout`'s exit status: the capture window closed as planned
REBIND_PORTS = "20000-29999"
ROUTER_SCRIPT = "/usr/local/bin/nat-router"
TIMEOUT_TABLE = "testbed_mapping_timeout"
WAN_IFACE_FILE = "/run/testbed-wan-iface"  # the uplink's interface, once its address has changed
SPARE_FROM_TOP = 64  # address_change takes uplink addresses this far below the subnet's top


@dataclass
class FaultContext:
    """What a fault needs: the testbed, the timeline, where evidence goes, and what to undo."""

    testbed: Testbed
    timeline: Timeline
    evidence: Path
    partitioned: set[str] = field(default_factory=set)
    background: list[threading.Thread] = field(default_factory=list)  # capture windows still open

    @property
    def project(self) -> str:
        return self.testbed.plan.project

    def router(self, lan: str) -> Container:
        """The router in front of LAN `lan` (a CGNAT LAN's home router)."""
        router = next(r for r in self.testbed.plan.lan_routers if r.lan == lan)
        return self.testbed.container(router.name)

    def router_plan(self, lan: str) -> RouterPlan:
        return next(r for r in self.testbed.plan.lan_routers if r.lan == lan)

    def seen_address(self, name: str) -> str:
        """Where the WAN sees a node or relay."""
        plan = self.testbed.plan
        return plan.seen_as(name) if name in plan.nodes else plan.relays[name].ip


def router_exec(container: Container, script: str) -> str:
    """Run `script` in the router with its NAT functions and settings (nat-router sourced)."""
    prelude = (
        f'. {ROUTER_SCRIPT}; WAN=$(cat {WAN_IFACE_FILE} 2>/dev/null || iface_of "$WAN_IP"); '
        'LAN=$(iface_of "$LAN_IP"); '
    )
    code, output = container.exec_run(["bash", "-c", prelude + script])
    text = output.decode(errors="replace")
    if code != 0:
        raise EngineError(f"{container.name}: `{script}` failed ({code}):\n{text[-2000:]}")
    return text


def conntrack_dump(ctx: FaultContext, lan: str, when: str, fault: str) -> None:
    container = ctx.router(lan)
    dump = router_exec(container, "conntrack -L 2>/dev/null || true")
    path = ctx.evidence / "conntrack" / f"{ctx.timeline.elapsed():08.2f}-{fault}-{lan}-{when}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump)


def _router_fault(
    ctx: FaultContext, fault: str, lan: str, body: Callable[[Container], None], **detail
) -> None:
    """A router fault between its conntrack dumps and begin/end events."""
    container = ctx.router(lan)
    conntrack_dump(ctx, lan, "before", fault)
    ctx.timeline.record("fault", lan, fault=fault, phase="begin", **detail)
    body(container)
    ctx.timeline.record("fault", lan, fault=fault, phase="end", **detail)
    conntrack_dump(ctx, lan, "after", fault)


def nat_flush(ctx: FaultContext, router: str) -> None:
    _router_fault(ctx, "nat_flush", router, lambda c: router_exec(c, "conntrack -F"))


def router_reboot(ctx: FaultContext, router: str, down_s: float) -> None:
    def reboot(container: Container) -> None:
        router_exec(
            container,
            "iptables -w -P FORWARD DROP; iptables -w -F; iptables -w -t nat -F; "
            "nft delete table ip restricted_cone 2>/dev/null; conntrack -F 2>/dev/null; true",
        )
        time.sleep(down_s)  # the scenario's own time: the router is down this long
        router_exec(container, "conntrack -F 2>/dev/null; nat_rules")

    _router_fault(ctx, "router_reboot", router, reboot, down_s=down_s)


def nat_rebind(ctx: FaultContext, router: str) -> None:
    rebind = (
        f'for p in tcp udp; do iptables -w -t nat -I POSTROUTING 1 -s "$LAN_SUBNET" -o "$WAN" '
        f"-p $p -j MASQUERADE --to-ports {REBIND_PORTS} --random; done; conntrack -F"
    )
    _router_fault(ctx, "nat_rebind", router, lambda c: router_exec(c, rebind), ports=REBIND_PORTS)


def mapping_timeout_rules(tcp_s: int | None, udp_s: int | None) -> str:
    """The nftables table that gives every flow tracked from now on the shorter idle timeouts."""
    objects, statements = [], []
    for proto, seconds, policy in (
        ("tcp", tcp_s, "established: {s}"),
        ("udp", udp_s, "unreplied: {s}, replied: {s}"),
    ):
        if seconds is not None:
            objects.append(
                f"  ct timeout {proto}-short {{ protocol {proto}; l3proto ip; "
                f"policy = {{ {policy.format(s=seconds)} }}; }}"
            )
            statements.append(f'    meta l4proto {proto} ct timeout set "{proto}-short"')
    # after conntrack (-200) has made the flow's entry, before it confirms it: the policy sticks
    chain = ["  chain pre { type filter hook prerouting priority filter; policy accept;", *statements, "  }"]
    return "\n".join([f"table ip {TIMEOUT_TABLE} {{", *objects, *chain, "}"])


def mapping_timeout(ctx: FaultContext, router: str, tcp_s: int | None, udp_s: int | None) -> None:
    script = (
        f"nft delete table ip {TIMEOUT_TABLE} 2>/dev/null; "
        f"nft -f - <<'NFT'\n{mapping_timeout_rules(tcp_s, udp_s)}\nNFT\nconntrack -F"
    )
    _router_fault(ctx, "mapping_timeout", router, lambda c: router_exec(c, script), tcp_s=tcp_s, udp_s=udp_s)


def spare_uplink_address(ctx: FaultContext, lan: str) -> tuple[str, int]:
    """An uplink address no container has (and its prefix length), one per router."""
    planned = ctx.router_plan(lan)
    subnet = ipaddress.ip_network(ctx.testbed.plan.networks[planned.wan_network].subnet)
    index = [r.lan for r in ctx.testbed.plan.lan_routers].index(lan)
    return str(subnet.broadcast_address - SPARE_FROM_TOP - index), subnet.prefixlen


def address_change_script(new: str, prefix: int) -> str:
    """Replace every address of the uplink by `new`; the route to the CGN (if any) comes back."""
    return (
        f'echo "$WAN" > {WAN_IFACE_FILE}; '
        "for a in $(ip -o -4 addr show dev \"$WAN\" | awk '{print $4}'); do "
        'ip addr del "$a" dev "$WAN"; done; '
        f'ip addr add {new}/{prefix} dev "$WAN"; '
        'if [ -n "${UPSTREAM_GATEWAY:-}" ]; then ip route replace default via "$UPSTREAM_GATEWAY"; fi; '
        "conntrack -F"
    )


def address_change(ctx: FaultContext, router: str) -> None:
    new, prefix = spare_uplink_address(ctx, router)
    script = address_change_script(new, prefix)
    _router_fault(ctx, "address_change", router, lambda c: router_exec(c, script), address=new)


def conntrack_full(ctx: FaultContext, router: str, for_s: float | None) -> None:
    """New flows dropped for `for_s` (None: until the run ends, when the router goes with it)."""
    rule = '-i "$LAN" -m conntrack --ctstate NEW -j DROP'

    def full(container: Container) -> None:
        router_exec(container, f"iptables -w -I FORWARD 1 {rule}")
        if for_s is not None:
            time.sleep(for_s)
            router_exec(container, f"iptables -w -D FORWARD {rule}")

    _router_fault(ctx, "conntrack_full", router, full, for_s=for_s)


def partition(ctx: FaultContext, between: list[list[str]]) -> None:
    side_a, side_b = between
    ctx.timeline.record("fault", " | ".join(",".join(s) for s in between), fault="partition", phase="begin")
    for own, other in ((side_a, side_b), (side_b, side_a)):
        for name in own:
            drops = [
                line
                for peer in other
                for line in (
                    f"iptables -w -A {PARTITION_CHAIN} -d {ctx.seen_address(peer)} -j DROP",
                    f"iptables -w -A {PARTITION_CHAIN} -s {ctx.seen_address(peer)} -j DROP",
                )
            ]
            hook = "iptables -w -C {0} -j {1} 2>/dev/null || iptables -w -I {0} -j {1}"
            script = [
                f"iptables -w -N {PARTITION_CHAIN} 2>/dev/null || true",
                hook.format("INPUT", PARTITION_CHAIN),
                hook.format("OUTPUT", PARTITION_CHAIN),
                *drops,
            ]
            run_in_netns(
                ctx.testbed.container(name), ["sh", "-c", "\n".join(script)], ctx.project, net_admin=True
            )
            ctx.partitioned.add(name)


def heal(ctx: FaultContext) -> None:
    for name in sorted(ctx.partitioned):
        run_in_netns(
            ctx.testbed.container(name),
            ["sh", "-c", f"iptables -w -F {PARTITION_CHAIN} 2>/dev/null; true"],
            ctx.project,
            net_admin=True,
        )
    ctx.timeline.record("fault", ",".join(sorted(ctx.partitioned)), fault="partition", phase="end")
    ctx.partitioned.clear()


def link_flap(ctx: FaultContext, node: str, down_s: float) -> None:
    container = ctx.testbed.container(node)
    ctx.timeline.record("fault", node, fault="link_flap", phase="begin", down_s=down_s)
    dev = dev_of(ctx.testbed.plan.nodes[node].ip)
    flap = f"{dev}; ip link set $dev down; sleep {down_s}; ip link set $dev up"
    run_in_netns(
        container, ["sh", "-c", flap],
        ctx.project, net_admin=True, timeout_s=down_s + 60,
    )  # fmt: skip
    plumb(ctx.testbed.plan, {node: container})  # its routes went with the link; its shaping stays
    ctx.timeline.record("fault", node, fault="link_flap", phase="end", down_s=down_s)


def kill(ctx: FaultContext, target: str) -> None:
    ctx.timeline.record("fault", target, fault="kill", phase="begin")
    ctx.testbed.container(target).kill()
    ctx.timeline.record("fault", target, fault="kill", phase="end")


def pause(ctx: FaultContext, target: str, for_s: float) -> None:
    container = ctx.testbed.container(target)
    ctx.timeline.record("fault", target, fault="pause", phase="begin", for_s=for_s)
    container.pause()
    try:
        time.sleep(for_s)
    finally:
        container.unpause()
    ctx.timeline.record("fault", target, fault="pause", phase="end", for_s=for_s)


RELAY_BACK_S = 60.0


def restart(ctx: FaultContext, target: str) -> None:
    """Stop (if running) and start; a node waits until it is back, a relay until it is healthy."""
    ctx.timeline.record("fault", target, fault="restart", phase="begin")
    if target in ctx.testbed.plan.nodes:
        container = ctx.testbed.container(target)
        container.reload()
        if container.status == "running":
            ctx.testbed.stop(target)
        ctx.testbed.start(target)
    else:
        container = ctx.testbed.container(target)
        container.restart(timeout=10)
        plumb(ctx.testbed.plan, {target: container})

        def healthy() -> bool:
            container.reload()
            if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
                return True
            raise NotYet(f"relay {target} not healthy yet")

        wait_until(
            f"relay {target} to be healthy after its restart",
            healthy,
            RELAY_BACK_S,
            culprit=lambda: container.logs(tail=20).decode(errors="replace"),
        )
    ctx.timeline.record("fault", target, fault="restart", phase="end")


def capture(ctx: FaultContext, router: str, seconds: float) -> None:
    """Both legs of the router for the next `seconds`, while the timeline goes on: a helper in its
    namespace (NET_RAW for tcpdump); the file joins the evidence when the window closes."""
    target = ctx.router(router)
    # -Z root: tcpdump stays root, so `timeout` (which holds no CAP_KILL) can end it
    tcpdump = ["tcpdump", "-Z", "root", "-i", "any", "-n", "-s", "200", "-U", "-w", CAPTURE]
    helper = start_helper(
        target,
        ["timeout", str(seconds), *tcpdump],
        resource_labels(ctx.project, "helper"),
        ("NET_RAW", "NET_ADMIN", "SETUID", "SETGID"),  # tcpdump's setuid/setgroups to root
    )
    ctx.timeline.record("fault", router, fault="capture", phase="begin", seconds=seconds)
    name = f"{ctx.timeline.elapsed():08.2f}-{router}-"

    def collect() -> None:
        try:
            status = helper.wait(timeout=seconds + 30)["StatusCode"]
            if status != TIMED_OUT:  # tcpdump itself stopped: say why, keep what it wrote
                logs = helper.logs().decode(errors="replace")[-500:]
                ctx.timeline.record("note", router, text=f"capture ended early ({status}): {logs}")
            for path in copy_out(helper, "/tmp", ctx.evidence / "captures", prefix=name):
                ctx.timeline.record("capture", router, file=str(path.relative_to(ctx.evidence)))
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                helper.remove(force=True)
            ctx.timeline.record("fault", router, fault="capture", phase="end", seconds=seconds)

    thread = threading.Thread(target=collect, name=f"capture-{router}", daemon=True)
    thread.start()
    ctx.background.append(thread)


FAULTS: dict[str, Callable[..., None]] = {
    "partition": partition,
    "heal": heal,
    "link_flap": link_flap,
    "nat_flush": nat_flush,
    "router_reboot": router_reboot,
    "nat_rebind": nat_rebind,
    "conntrack_full": conntrack_full,
    "mapping_timeout": mapping_timeout,
    "address_change": address_change,
    "kill": kill,
    "pause": pause,
    "restart": restart,
    "capture": capture,
}
