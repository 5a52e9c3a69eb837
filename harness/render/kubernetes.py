"""Render a Plan for Kubernetes: the same services as the compose file, as manifests for an existing
cluster (`testbed render TOPOLOGY --target kubernetes`; docs/kubernetes.md).

What carries over: every storage node and relay becomes a Pod with the same image, configuration,
probe, capabilities (all dropped) and data volume (an emptyDir: a testbed's data lives as long as
the testbed). The WAN becomes the cluster network: a pod announces its own pod IP (the
downward API's `status.podIP`, where compose has a fixed address), pods find each other by DNS
through one headless Service, and a NetworkPolicy lets pods send only to the testbed's own pods
and to cluster DNS, as the `internal` WAN lets nothing leave. The harness's peering (REST
`/connect` for every edge of the plan) becomes a Job that the cluster runs once every node
answers; the Job completes when every edge is connected.

What does not: a pod has one interface on the cluster network, so there are no LANs, NAT routers
or a STUN referee (those need a multi-network plugin such as Multus and NET_ADMIN pods; run NAT
topologies on one machine); no link shaping (the plumbing helper shapes veths from the host);
no status peers (the harness joins their chat transport to the Waku fleet after start).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import TopologyError
from harness.labels import plan_labels
from harness.render.services import HEALTH_RETRIES, HEALTH_TIMEOUT_S, ServiceSpec, services
from harness.topology.plan import Plan

SERVICE = "testbed"  # the headless Service: pod `n` is `n.testbed.<namespace>.svc`
POD_IP = "POD_IP"
PEERING_DEADLINE_S = 300  # the Job's activeDeadlineSeconds: every edge connected by then
MANIFEST_FILE = "kubernetes.yaml"
# A label value may not hold `:` (a timestamp does): those become annotations.
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# A target's direct TCP addresses as `addrs=` query parameters, as the harness dials them
# (harness.clients.codex.dialable_addresses): the Codex era lists its announced addresses apart,
# the Logos era's `addrs` are them, relayed ones included.
DIALABLE_QUERY = (
    '(if has("announceAddresses") then .announceAddresses else (.addrs // []) end)'
    ' | map(select(contains("/tcp/") and (contains("/p2p-circuit") | not)))'
    ' | map("addrs=" + @uri) | join("&")'
)
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")


def unsupported(plan: Plan) -> list[tuple[str, str]]:
    """(key path, why) for what a Kubernetes cluster cannot run as the topology declares it."""
    problems = []
    for lan in (n for n in plan.networks.values() if n.kind != "wan"):
        problems.append(
            (
                f"networks.{lan.name}",
                f"a {lan.kind} network needs a second interface per pod and a NAT router pod "
                "(a multi-network plugin such as Multus): run NAT topologies on one machine",
            )
        )
    for node in plan.nodes.values():
        if node.link is not None:
            problems.append((f"nodes.{node.name}.link", "links are shaped from the host; not on a cluster"))
    for peer in plan.status:
        problems.append(
            (f"status.{peer}", "status peers are joined to the Waku fleet by the harness after start")
        )
    for spec in services(plan):
        if not _DNS_LABEL.fullmatch(spec.name) or len(spec.name) > 63:
            key = f"nodes.{spec.name}" if spec.name in plan.nodes else spec.name
            problems.append((key, "a pod name must be lowercase letters, digits and '-' (at most 63)"))
    return problems


def manifests(plan: Plan) -> list[dict[str, Any]]:
    """The manifests, in the order `kubectl apply -f` creates them."""
    if problems := unsupported(plan):
        key, why = problems[0]
        more = f"; also {', '.join(k for k, _ in problems[1:])}" if len(problems) > 1 else ""
        raise TopologyError(plan.source, key, f"not rendered for Kubernetes: {why}{more}")
    specs = services(plan)
    addresses = {spec.name: _address_of(spec) for spec in specs}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _metadata(plan, plan.project, "namespace")},
        _headless_service(plan),
        _network_policy(plan),
    ]
    for spec in specs:
        env = plan.nodes[spec.name].env if spec.name in plan.nodes else spec.environment
        objects.append(_pod(plan, spec, _cluster_env(plan, spec.name, env, addresses)))
    if plan.edges:
        objects += _peering(plan)
    return objects


def render_to_string(plan: Plan) -> str:
    documents = manifests(plan)
    header = (
        f"# Rendered by the testbed from {plan.source} for project {plan.project}, for Kubernetes.\n"
        f"# kubectl apply -f {MANIFEST_FILE}; then: kubectl -n {plan.project} wait --for=condition=complete "
        f"job/peering (docs/kubernetes.md)\n"
    )
    return header + yaml.safe_dump_all(documents, sort_keys=False, width=120)


def render(plan: Plan, out_dir: Path) -> Path:
    """Write the manifests; a plan a cluster cannot run writes nothing."""
    text = render_to_string(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST_FILE
    path.write_text(text)
    return path


def _metadata(plan: Plan, name: str, role: str, namespace: str | None = None) -> dict[str, Any]:
    labels, annotations = {}, {}
    for key, value in plan_labels(plan, role).items():
        (labels if len(value) <= 63 and _LABEL_VALUE.fullmatch(value) else annotations)[key] = value
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _address_of(spec: ServiceSpec) -> str:
    (address,) = spec.networks.values()  # one network: unsupported() refused the others
    return address


def _dns_name(service: str, namespace: str) -> str:
    return f"{service}.{SERVICE}.{namespace}.svc"


def _cluster_env(plan: Plan, own: str, env: dict[str, str], addresses: dict[str, str]) -> dict[str, str]:
    """A service's configuration with the plan's addresses replaced: its own by its pod IP, another
    service's (in a URL) by that pod's DNS name. `$` is doubled: Kubernetes expands `$(VAR)`."""
    names = {address: service for service, address in addresses.items()}

    def rewrite(key: str, value: str) -> str:
        out, last = [], 0
        for match in _IPV4.finditer(value):
            ip = match.group()
            if ip == addresses[own]:
                replacement = f"$({POD_IP})"
            elif ip in names and value[: match.start()].endswith("//"):
                replacement = _dns_name(names[ip], plan.project)
            elif ip in names:
                raise TopologyError(
                    plan.source, f"{own}.env.{key}", f"{names[ip]}'s address outside a URL: no DNS name fits"
                )
            else:
                continue
            out += [value[last : match.start()].replace("$", "$$"), replacement]
            last = match.end()
        return "".join([*out, value[last:].replace("$", "$$")])

    return {key: rewrite(key, value) for key, value in env.items()}


def _headless_service(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(plan, SERVICE, "service", plan.project),
        "spec": {
            "clusterIP": "None",
            "selector": {"testbed.project": plan.project},
            # names resolve before the probes pass: the peering Job waits for the nodes itself
            "publishNotReadyAddresses": True,
        },
    }


def _network_policy(plan: Plan) -> dict[str, Any]:
    """The `internal` WAN: a pod may send only to the testbed's pods and to cluster DNS."""
    dns = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    kube_system = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(plan, "wan-internal", "network", plan.project),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {}}]}, {"to": [kube_system], "ports": dns}],
        },
    }


def _pod_security() -> dict[str, Any]:
    """Docker's default seccomp profile, which every compose container runs under (a pod runs
    unconfined unless asked)."""
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def _security_context(cap_add: tuple[str, ...] = ()) -> dict[str, Any]:
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if cap_add:
        capabilities["add"] = list(cap_add)
    return {"capabilities": capabilities, "allowPrivilegeEscalation": False}


def _pod(plan: Plan, spec: ServiceSpec, env: dict[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": spec.role, "image": spec.image, "imagePullPolicy": "IfNotPresent"}
    if spec.entrypoint:
        container["command"] = list(spec.entrypoint)
    container["env"] = [
        {"name": POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *({"name": key, "value": value} for key, value in env.items()),
    ]
    pod_spec: dict[str, Any] = {
        "hostname": spec.name,
        "subdomain": SERVICE,
        "restartPolicy": "Never",  # as compose runs it: a node that stops stays stopped
        "terminationGracePeriodSeconds": spec.stop_grace_s,
        "containers": [container],
    }
    if spec.volume:
        _, path = spec.volume.split(":", 1)
        container["volumeMounts"] = [{"name": "data", "mountPath": path}]
        pod_spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    if spec.healthcheck:
        container["readinessProbe"] = {
            "exec": {"command": ["/bin/sh", "-c", spec.healthcheck.command]},
            "periodSeconds": spec.healthcheck.interval_s,
            "timeoutSeconds": HEALTH_TIMEOUT_S,
            "failureThreshold": HEALTH_RETRIES,
        }
    container["securityContext"] = _security_context(spec.cap_add)
    pod_spec["securityContext"] = _pod_security()
    if spec.sysctls:  # tcp_congestion only (routers are refused): kubelet must allow it as unsafe
        pod_spec["securityContext"]["sysctls"] = [{"name": k, "value": v} for k, v in spec.sysctls.items()]
    metadata = _metadata(plan, spec.name, spec.role, plan.project)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def cluster_api_url(plan: Plan, node: str) -> str:
    """A node's REST base inside the cluster: its pod's DNS name."""
    plan_node = plan.nodes[node]
    return f"http://{_dns_name(node, plan.project)}:{plan_node.api_port}{plan_node.profile.api_prefix}"


def peering_script(plan: Plan, api_url: Callable[[Plan, str], str] = cluster_api_url) -> str:
    """POSIX sh for the peering Job: for every edge, the dialer is told to connect to the
    target's peer id at its announced addresses, as the harness does over REST; each edge is
    retried until it succeeds, within the Job's deadline. Uses curl and jq, which the node
    images' probes already need. (`api_url`: how the script reaches a node; a functional test
    runs it in a compose testbed, by address.)"""

    def api(node: str) -> str:
        return shlex.quote(api_url(plan, node))

    lines = [
        "set -u",
        "# dial DIALER_API TARGET_API: the target's id and announced addresses, then the dialer's /connect",
        "dial() {",
        '  info=$(curl -sf --max-time 5 "$2/debug/info") || return 1',
        '  id=$(echo "$info" | jq -er .id) || return 1',
        f'  query=$(echo "$info" | jq -er {shlex.quote(DIALABLE_QUERY)}) || return 1',
        '  curl -sf --max-time 30 "$1/connect/$id?$query" >/dev/null',
        "}",
    ]
    for dialer, target in plan.edges:
        pair = shlex.quote(f"{dialer} -> {target}")
        lines += [
            f"until dial {api(dialer)} {api(target)}; do sleep 1; done",
            f"echo connected {pair}",
        ]
    return "\n".join(lines) + "\n"


def _peering(plan: Plan) -> list[dict[str, Any]]:
    namespace = plan.project
    image = next(iter(plan.nodes.values())).image
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(plan, "peering", "peering", namespace),
        "data": {"peering.sh": peering_script(plan)},
    }
    container = {
        "name": "peering",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "/peering/peering.sh"],
        "volumeMounts": [{"name": "script", "mountPath": "/peering"}],
        "securityContext": _security_context(),
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(plan, "peering", "peering", namespace),
        "spec": {
            "activeDeadlineSeconds": PEERING_DEADLINE_S,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"testbed.project": plan.project, "testbed.role": "peering"}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "script", "configMap": {"name": "peering"}}],
                },
            },
        },
    }
    return [config_map, job]
