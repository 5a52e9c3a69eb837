"""The renderer's output for `basic` is pinned by golden files; both compose flavours accept it.

Regenerate after an intended change with: UPDATE_GOLDENS=1 pytest suites/unit/test_render_golden.py
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness.render.compose import render, render_to_strings
from harness.render.services import services
from harness.topology import loader
from harness.topology.plan import Plan, make_plan

GOLDENS = Path(__file__).parent / "golden"
FIXED_IMAGES = {
    "codex-ref": "testbed/codex-ref:0123456789ab",
    "router": "testbed/router:r",
    "stun": "testbed/stun:s",
    "status-ref": "testbed/status-ref:st",
    "relay": "testbed/relay:rl",
}
SUBNETS = {
    "basic": ["11.200.42.0/24"],
    "nat-pair": ["11.200.42.0/24", "10.213.42.0/24", "10.213.43.0/24"],
    "archive": ["11.200.42.0/24"],
    "nat-relay": ["11.200.42.0/24", *(f"10.213.{n}.0/24" for n in range(42, 48))],
}


def golden_plan(topology: str = "basic") -> Plan:
    return make_plan(
        loader.load(topology),
        [ipaddress.IPv4Network(s) for s in SUBNETS[topology]],
        FIXED_IMAGES,
        project=f"tb-{topology}-golden",
        created="2026-01-01T00:00:00Z",
    )


@pytest.mark.parametrize("topology", sorted(SUBNETS))
def test_rendered_files_match_goldens(topology: str) -> None:
    rendered = render_to_strings(golden_plan(topology))
    golden = GOLDENS / topology
    if os.environ.get("UPDATE_GOLDENS") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        for relative, content in rendered.items():
            (golden / relative).parent.mkdir(parents=True, exist_ok=True)
            (golden / relative).write_text(content)
    expected = {str(p.relative_to(golden)): p.read_text() for p in golden.rglob("*") if p.is_file()}
    assert rendered == expected


def test_compose_structure_follows_the_network_model() -> None:
    compose = yaml.safe_load(render_to_strings(golden_plan("nat-pair"))["compose.yaml"])
    wan = compose["networks"]["wan"]
    assert compose["networks"]["home-a"]["internal"] is False, "a LAN must carry what its router forwards"
    assert (
        compose["networks"]["home-a"]["driver_opts"]["com.docker.network.bridge.enable_ip_masquerade"]
        == "false"
    )
    for name, service in compose["services"].items():
        privileged = set(service.get("cap_add", []))
        assert privileged <= ({"NET_ADMIN", "NET_RAW"} if name.startswith("router-") else set()), name
    assert wan["internal"] is True, "the WAN must never reach outside the machine"
    assert wan["ipam"]["config"][0]["subnet"] == "11.200.42.0/24"
    assert set(compose) == {"services", "networks", "volumes"}, "no top-level name/version (v1 rejects name)"
    for name, service in compose["services"].items():
        assert service["labels"]["testbed.project"] == "tb-nat-pair-golden"
        assert service["cap_drop"] == ["ALL"], f"{name} must drop every capability it does not add"
        assert "ports" not in service, "no host ports: the host reaches nodes by their WAN address"
        assert "privileged" not in service
        assert not any("docker.sock" in v for v in service.get("volumes", []))
    for volume in compose["volumes"].values():
        assert volume["labels"]["testbed.role"] == "volume"


def test_topology_sets_how_often_docker_runs_healthchecks() -> None:
    """`basic` keeps the default; a topology that sets `healthcheck_interval` gets it on every
    probed service (nodes and reference status peers) and through plan.json."""
    default = yaml.safe_load(render_to_strings(golden_plan())["compose.yaml"])
    assert {s["healthcheck"]["interval"] for s in default["services"].values()} == {"10s"}
    topology = replace(loader.load("archive"), healthcheck_interval=3600)
    plan = make_plan(topology, [ipaddress.IPv4Network("11.200.42.0/24")], FIXED_IMAGES, project="tb-hc")
    services = yaml.safe_load(render_to_strings(Plan.from_json(plan.to_json()))["compose.yaml"])["services"]
    probed = [name for name, s in services.items() if "healthcheck" in s]
    assert set(probed) == set(plan.nodes) | set(plan.status)
    assert {services[name]["healthcheck"]["interval"] for name in probed} == {"3600s"}


def test_plan_round_trips_through_json() -> None:
    plan = golden_plan()
    assert Plan.from_json(plan.to_json()) == plan


def _compose_clis() -> list[list[str]]:
    clis = []
    if shutil.which("docker-compose"):
        clis.append(["docker-compose"])
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        clis.append(["docker", "compose"])
    return clis


@pytest.mark.parametrize(
    "cli", _compose_clis() or [pytest.param(None, marks=pytest.mark.skip("no compose CLI"))]
)
@pytest.mark.parametrize("topology", sorted(SUBNETS))
def test_compose_cli_accepts_the_rendered_file(cli: list[str], topology: str, tmp_path: Path) -> None:
    compose_file = render(golden_plan(topology), tmp_path)
    result = subprocess.run(
        [*cli, "-p", "tb-golden", "-f", str(compose_file), "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_container_is_one_service_spec_and_only_routers_add_capabilities() -> None:
    for topology in ("basic", "nat-pair", "nat-relay", "archive"):
        plan = golden_plan(topology)
        specs = {spec.name: spec for spec in services(plan)}
        assert set(specs) == set(plan.containers), topology
        for spec in specs.values():
            router = plan.routers.get(spec.name)
            capture = ("NET_ADMIN", "NET_RAW", "CHOWN", "SETUID", "SETGID")  # tcpdump, with pcap
            wanted = () if router is None else capture if router.pcap else ("NET_ADMIN",)
            assert spec.cap_add == wanted, spec.name
            assert (spec.healthcheck is not None) == (spec.role in ("codex", "status")), spec.name
    compose = yaml.safe_load(render_to_strings(golden_plan("nat-pair"))["compose.yaml"])
    assert all(s["security_opt"] == ["no-new-privileges:true"] for s in compose["services"].values())
    assert all(s["cap_drop"] == ["ALL"] for s in compose["services"].values())
