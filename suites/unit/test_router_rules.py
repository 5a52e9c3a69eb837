"""The router image's per-profile rules: images/router/nat-router sourced in bash (which defines its
functions only), iptables and nft stubbed to print their arguments, then `nat_rules` run with the
environment the harness gives each router of nat-profiles. Nothing outside bash runs: PATH is an
empty directory, any command bash would look up there fails the run, and the shell is restricted
(`set -r`) so no command named by its path can run either."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from harness.render.services import services
from harness.topology import loader
from harness.topology.plan import make_plan

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "router" / "nat-router"
BASH = shutil.which("bash") or "/bin/bash"
WAN, LAN = "wan0", "lan0"  # what iface_of finds at runtime (by address)

# Every external command the script calls anywhere; each prints UNEXPECTED if nat_rules calls it.
OTHERS = ("ip", "awk", "iptables-save", "sed", "mkdir", "tcpdump", "touch", "sleep", "sysctl", "cat")
# The stubs print their words joined by spaces, so each must be one non-empty word.
STUBS = r"""
words() { local w; for w; do [[ -n $w && $w != *[[:space:]]* ]] || echo "UNEXPECTED word '$w'"; done; }
iptables() { words "$@"; echo "iptables $*"; }
nft() { words "$@"; echo "nft $*"; while IFS= read -r line; do echo "| $line"; done; }
for name in $OTHERS; do eval "$name() { echo UNEXPECTED $name \"\$*\"; return 1; }"; done
command_not_found_handle() { echo "EXTERNAL $*"; return 127; }
"""


@cache
def router_envs() -> dict[str, dict[str, str]]:
    """Each router of nat-profiles by name, with the environment its service gets."""
    topology = loader.load("nat-profiles")
    lans = len(topology.network_kinds()) - 1
    subnets = [ipaddress.IPv4Network("11.200.42.0/24")]
    subnets += [ipaddress.IPv4Network(f"10.213.{40 + n}.0/24") for n in range(lans)]
    images = {"codex-ref": "img", "router": "router-img", "stun": "stun-img", "relay": "relay-img"}
    plan = make_plan(topology, subnets, images, project="tb-router-rules")
    return {s.name: dict(s.environment) for s in services(plan) if s.role == "router"}


def bash(program: str, env: dict[str, str], empty: Path) -> subprocess.CompletedProcess[str]:
    """`program` in a clean bash (as `env -i PATH=/usr/bin:/bin bash -c`), $1 the script, $2 an
    empty directory to use as PATH once it is sourced."""
    return subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program, "bash", str(SCRIPT), str(empty)],
        env={"PATH": "/usr/bin:/bin", "OTHERS": " ".join(OTHERS), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_nat_rules(env: dict[str, str], empty: Path) -> subprocess.CompletedProcess[str]:
    """nat_rules under the script's own shell options, stubbed, restricted, and PATH empty."""
    program = f"""set -euo pipefail
source "$1"
{STUBS}
PATH=$2; hash -r; set -r
WAN={WAN} LAN={LAN}
nat_rules
"""
    return bash(program, env, empty)


def nat_rules(router: str, tmp_path: Path, **override: str) -> list[str]:
    run = run_nat_rules({**router_envs()[router], **override}, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("UNEXPECTED", "EXTERNAL"))]
    return lines


def test_the_harness_gives_the_routers_these_environments() -> None:
    envs = router_envs()
    assert envs["router-lan-port-restricted"] == {
        "NAT_PROFILE": "port-restricted",
        "WAN_IP": "11.200.42.15",
        "LAN_IP": "10.213.43.2",
        "LAN_SUBNET": "10.213.43.0/24",
        "LAN_HOST": "10.213.43.10",
        "FORWARD_PORTS": "",
        "HAIRPIN": "0",
    }
    assert envs["router-lan-port-forward"]["FORWARD_PORTS"] == "8070 8090"
    assert envs["router-lan-full-cone"]["HAIRPIN"] == "1"
    assert envs["router-lan-cgnat"]["NAT_PROFILE"] == "port-restricted"
    assert envs["router-lan-cgnat-symmetric-cgn"]["NAT_PROFILE"] == "symmetric"


def test_sourcing_the_script_only_defines_its_functions(tmp_path: Path) -> None:
    program = f"""{STUBS}
PATH=$2; hash -r
source "$1"
echo "sourced: $-"
declare -F nat_rules masquerade stateful_forward quiet_wan dnat_all_to_host ipt log iface_of
"""
    run = bash(program, router_envs()["router-lan-port-restricted"], tmp_path)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines() == [
        "sourced: hBc",  # no rule, no command, and none of the script's set -euo pipefail
        "nat_rules", "masquerade", "stateful_forward", "quiet_wan", "dnat_all_to_host", "ipt",
        "log", "iface_of",
    ]  # fmt: skip


def test_port_restricted(tmp_path: Path) -> None:
    assert nat_rules("router-lan-port-restricted", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.43.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
    ]


def test_short_udp_timeout_and_a_cgnat_home_router_are_port_restricted(tmp_path: Path) -> None:
    expected = [
        "iptables -w -t nat -A POSTROUTING -s 10.213.47.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
    ]
    assert nat_rules("router-lan-short-udp-timeout", tmp_path) == expected
    cgnat = [line.replace("10.213.47.0/24", "10.213.48.0/24") for line in expected]
    assert nat_rules("router-lan-cgnat", tmp_path) == cgnat, "UPSTREAM_GATEWAY adds no rule"


def test_port_restricted_rst_leaves_the_router_itself_open(tmp_path: Path) -> None:
    assert nat_rules("router-lan-port-restricted-rst", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.44.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]


def test_symmetric(tmp_path: Path) -> None:
    assert nat_rules("router-lan-symmetric", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.45.0/24 -o wan0 -j MASQUERADE --random-fully",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
    ]


def test_udp_blocked_drops_udp_before_anything_is_accepted(tmp_path: Path) -> None:
    assert nat_rules("router-lan-udp-blocked", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.46.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -A FORWARD -p udp -j DROP",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
    ]


FULL_CONE = [
    "iptables -w -t nat -A POSTROUTING -s 10.213.41.0/24 -o wan0 -j MASQUERADE",
    "iptables -w -t nat -A PREROUTING -i wan0 -p tcp -j DNAT --to-destination 10.213.41.10",
    "iptables -w -t nat -A PREROUTING -i wan0 -p udp -j DNAT --to-destination 10.213.41.10",
    "iptables -w -P FORWARD DROP",
    "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
    "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "iptables -w -A FORWARD -i wan0 -o lan0 -d 10.213.41.10 -j ACCEPT",
    "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "iptables -w -A INPUT -i wan0 -j DROP",
]
FULL_CONE_HAIRPIN = [
    "iptables -w -t nat -A PREROUTING -i lan0 -d 11.200.42.13 -j DNAT --to-destination 10.213.41.10",
    "iptables -w -t nat -A POSTROUTING -o lan0 -s 10.213.41.0/24 -d 10.213.41.0/24"
    " -j SNAT --to-source 11.200.42.13",
    "iptables -w -A FORWARD -i lan0 -o lan0 -j ACCEPT",
]  # fmt: skip


def test_full_cone_with_hairpin_on_as_nat_profiles_declares_it(tmp_path: Path) -> None:
    assert nat_rules("router-lan-full-cone", tmp_path) == FULL_CONE + FULL_CONE_HAIRPIN


def test_full_cone_without_hairpin(tmp_path: Path) -> None:
    assert nat_rules("router-lan-full-cone", tmp_path, HAIRPIN="0") == FULL_CONE


def test_hairpin_on_appends_its_three_rules_to_any_profile(tmp_path: Path) -> None:
    assert nat_rules("router-lan-port-restricted", tmp_path, HAIRPIN="1")[-3:] == [
        "iptables -w -t nat -A PREROUTING -i lan0 -d 11.200.42.15 -j DNAT --to-destination 10.213.43.10",
        "iptables -w -t nat -A POSTROUTING -o lan0 -s 10.213.43.0/24 -d 10.213.43.0/24"
        " -j SNAT --to-source 11.200.42.15",
        "iptables -w -A FORWARD -i lan0 -o lan0 -j ACCEPT",
    ]  # fmt: skip


def test_port_forward_forwards_each_port_over_tcp_and_udp(tmp_path: Path) -> None:
    assert nat_rules("router-lan-port-forward", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.40.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
        "iptables -w -t nat -A PREROUTING -i wan0 -p tcp --dport 8070"
        " -j DNAT --to-destination 10.213.40.10:8070",
        "iptables -w -A FORWARD -i wan0 -o lan0 -p tcp -d 10.213.40.10 --dport 8070 -j ACCEPT",
        "iptables -w -t nat -A PREROUTING -i wan0 -p udp --dport 8070"
        " -j DNAT --to-destination 10.213.40.10:8070",
        "iptables -w -A FORWARD -i wan0 -o lan0 -p udp -d 10.213.40.10 --dport 8070 -j ACCEPT",
        "iptables -w -t nat -A PREROUTING -i wan0 -p tcp --dport 8090"
        " -j DNAT --to-destination 10.213.40.10:8090",
        "iptables -w -A FORWARD -i wan0 -o lan0 -p tcp -d 10.213.40.10 --dport 8090 -j ACCEPT",
        "iptables -w -t nat -A PREROUTING -i wan0 -p udp --dport 8090"
        " -j DNAT --to-destination 10.213.40.10:8090",
        "iptables -w -A FORWARD -i wan0 -o lan0 -p udp -d 10.213.40.10 --dport 8090 -j ACCEPT",
    ]  # fmt: skip


def test_restricted_cone_learns_contacted_remotes_in_nft(tmp_path: Path) -> None:
    assert nat_rules("router-lan-restricted-cone", tmp_path) == [
        "iptables -w -t nat -A POSTROUTING -s 10.213.42.0/24 -o wan0 -j MASQUERADE",
        "iptables -w -t nat -A PREROUTING -i wan0 -p tcp -j DNAT --to-destination 10.213.42.10",
        "iptables -w -t nat -A PREROUTING -i wan0 -p udp -j DNAT --to-destination 10.213.42.10",
        "iptables -w -P FORWARD DROP",
        "iptables -w -A FORWARD -i lan0 -o wan0 -j ACCEPT",
        "iptables -w -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -w -A INPUT -i wan0 -j DROP",
        "nft -f -",
        "| table ip restricted_cone {",
        "|   set contacted { type ipv4_addr . ipv4_addr; flags dynamic, timeout; timeout 5m; }",
        "|   chain forward {",
        "|     type filter hook forward priority -10; policy accept;",
        '|     iifname "lan0" oifname "wan0" update @contacted { ip saddr . ip daddr }',
        '|     iifname "wan0" oifname "lan0" ct state new ip daddr . ip saddr != @contacted drop',
        "|   }",
        "| }",
        "iptables -w -A FORWARD -i wan0 -o lan0 -d 10.213.42.10 -j ACCEPT",
    ]  # fmt: skip


@pytest.mark.parametrize("profile", ["cgnat", "open", ""])
def test_an_unknown_profile_stops_the_router(profile: str, tmp_path: Path) -> None:
    env = {**router_envs()["router-lan-port-restricted"], "NAT_PROFILE": profile}
    run = run_nat_rules(env, tmp_path)
    assert (run.returncode, run.stdout) == (1, f"nat-router: unknown NAT_PROFILE '{profile}'\n")


def test_the_script_applies_nat_rules_once_after_the_sourced_guard() -> None:
    lines = SCRIPT.read_text().splitlines()
    guard = lines.index('if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then return 0; fi')
    assert lines[guard + 1] == "set -euo pipefail"
    assert [n for n, line in enumerate(lines) if line.strip() == "nat_rules"] == [
        lines.index("nat_rules", guard)
    ]


def upnp_conf(mode: str) -> subprocess.CompletedProcess[str]:
    """miniupnpd's configuration as the router writes it for `mode` (cat, and nothing else, real)."""
    program = f'source "$1"; WAN={WAN} LAN={LAN}; upnp_conf'
    env = {"PORT_MAPPING": mode, "LAN_SUBNET": "10.213.40.0/24"}
    return bash(program, env, Path("/nonexistent"))


@pytest.mark.parametrize("mode", ["grant", "broken"])
def test_a_mapping_router_lets_lan_hosts_map_unprivileged_ports_and_nothing_else(mode: str) -> None:
    run = upnp_conf(mode)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert {f"ext_ifname={WAN}", f"listening_ip={LAN}", "enable_natpmp=yes", "secure_mode=yes"} <= set(lines)
    assert lines[-2:] == ["allow 1024-65535 10.213.40.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]


def test_a_refusing_router_denies_every_request() -> None:
    lines = upnp_conf("refuse").stdout.splitlines()
    assert not [line for line in lines if line.startswith("allow")]
    assert lines[-1] == "deny 0-65535 0.0.0.0/0 0-65535"


def test_an_unknown_port_mapping_mode_is_an_error() -> None:
    run = upnp_conf("sometimes")
    assert run.returncode == 1 and "unknown PORT_MAPPING 'sometimes'" in run.stdout
