"""The Kubernetes target of the renderer: manifests valid against the API's own schemas, the
plan's addresses turned into pod IPs and DNS names, the same least privilege as compose, and a
clear refusal (writing nothing) for what a cluster cannot run."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from harness.errors import TopologyError
from harness.render import kubernetes
from harness.topology import loader
from harness.topology.plan import Plan, make_plan

IMAGES = {
    "codex-ref": "testbed/codex-ref:c",
    "relay": "testbed/relay:r",
    "router": "r",
    "stun": "s",
    "status-ref": "st",
}
# Oldest and newest of the schemas kubernetes-validate bundles that upstream still supported in 2026.
VERSIONS = ("1.34.0", "1.37.0")
RELAYED = """
name: relayed
peering: mesh
nodes:
  relay-1: {kind: relay, profile: default}
  a: {kind: codex, relay: relay-1}
  b: {kind: codex, relay: relay-1}
"""


def plan_of(topology: str, text: str | None = None) -> Plan:
    model = loader.parse(text, Path(f"<{topology}>")) if text else loader.load(topology)
    subnets = [ipaddress.IPv4Network(f"11.200.{i}.0/24") for i in range(len(model.network_kinds()))]
    return make_plan(model, subnets, IMAGES, project=f"tb-{topology}-k8s", created="2026-01-01T00:00:00Z")


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d["kind"] == kind]


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("topology", ["basic", "dht", "swarm", "relayed"])
def test_every_manifest_is_valid_against_the_kubernetes_api_schemas(topology, version) -> None:
    plan = plan_of(topology, RELAYED if topology == "relayed" else None)
    documents = list(yaml.safe_load_all(kubernetes.render_to_string(plan)))
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)  # raises on any unknown field
    pods = {p["metadata"]["name"] for p in by_kind(documents, "Pod")}
    assert pods == {*plan.nodes, *plan.relays}
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in documents} == {plan.project}


def test_addresses_become_the_pod_ip_and_dns_names_and_dollars_stay_literal() -> None:
    plan = plan_of("relayed", RELAYED)
    # topologies refuse `$` (compose reads it), but a value with one must reach the node as is
    node = plan.nodes["a"]
    plan = replace(plan, nodes={**plan.nodes, "a": replace(node, env={**node.env, "CODEX_LOG_LEVEL": "a$b"})})
    pods = {p["metadata"]["name"]: p for p in by_kind(kubernetes.manifests(plan), "Pod")}
    a = env_of(pods["a"])
    assert a["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    nat = next(value for key, value in a.items() if key.endswith("_NAT"))
    assert nat == "extip:$(POD_IP)"
    relay_url = next(value for key, value in a.items() if key.endswith("_RELAY_INFO_URL"))
    assert relay_url.startswith(f"http://relay-1.testbed.{plan.project}.svc:")
    assert a["CODEX_LOG_LEVEL"] == "a$$b", "Kubernetes reads `$$` as a literal `$`"
    assert env_of(pods["relay-1"])["RELAY_ANNOUNCE_IP"] == "$(POD_IP)"
    assert not any(plan.relays["relay-1"].ip in str(v) for pod in pods.values() for v in env_of(pod).values())


def test_pods_keep_composes_least_privilege_and_send_only_inside_the_testbed() -> None:
    documents = kubernetes.manifests(plan_of("swarm"))
    for pod in by_kind(documents, "Pod") + [j["spec"]["template"] for j in by_kind(documents, "Job")]:
        spec = pod["spec"]
        assert "hostNetwork" not in spec and all(v.get("hostPath") is None for v in spec.get("volumes", []))
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, "as docker's default"
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context == {"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False}
    (policy,) = by_kind(documents, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Egress"] and policy["spec"]["podSelector"] == {}
    same_namespace, dns = policy["spec"]["egress"]
    assert same_namespace == {"to": [{"podSelector": {}}]}
    assert {p["port"] for p in dns["ports"]} == {53}


def test_the_peering_job_dials_every_edge_of_the_plan_within_a_deadline() -> None:
    plan = plan_of("dht")
    config_map, job = kubernetes.manifests(plan)[-2:]
    script = config_map["data"]["peering.sh"]
    for dialer, target in plan.edges:
        assert f"echo connected '{dialer} -> {target}'" in script
        assert f"http://{dialer}.testbed.{plan.project}.svc:8080/api/storage/v1" in script
    assert job["spec"]["activeDeadlineSeconds"] == kubernetes.PEERING_DEADLINE_S
    assert not by_kind(kubernetes.manifests(plan_of("contract")), "Job"), "no edges, no Job"


@pytest.mark.parametrize(
    ("topology", "key"),
    [("nat-pair", "networks.home-a"), ("shaped", "nodes.codex-2.link"), ("archive", "status.owner")],
)
def test_what_a_cluster_cannot_run_is_refused_by_key_and_nothing_is_written(tmp_path, topology, key) -> None:
    with pytest.raises(TopologyError) as refused:
        kubernetes.render(plan_of(topology), tmp_path / "out")
    assert refused.value.key_path == key and "not rendered for Kubernetes" in str(refused.value)
    assert not (tmp_path / "out").exists()
