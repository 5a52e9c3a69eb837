"""One storage node in one container, without compose: testcontainers' `DockerContainer`.

What needs a node's REST API and nothing else (`testbed contract`, `pytest -m contract`) gets it
here in seconds: no networks, no routers, no readiness of a topology. The node is configured as
a testbed configures it (`harness.topology.plan.node_env`, from compose/topologies/contract.yaml
with the build under test applied): the same env spelling per profile, the same ports and data
dir, `strict` for a strict reference node. What differs from a testbed's node:

- a network of its own instead of a testbed's, `internal` as a testbed's WAN is: nothing in it
  can reach past the bridge (an upstream image may try bootstrap nodes or gateways), and the host
  reaches the node at its address on the bridge, as it reaches a testbed's nodes. Docker picks the
  subnet; nothing is published on the host, so parallel runs never collide.
- it announces 127.0.0.1 (`nat=extip:127.0.0.1`): a lone node has no peer to announce itself
  to, and an explicit address keeps an upstream node from probing for UPnP/NAT-PMP gateways.
- its data dir is the container's own layer (the image declares no volume); removing the
  container with its anonymous volumes leaves nothing.

Ryuk is off. testcontainers normally starts its reaper (`testcontainers/ryuk`, pulled from
Docker Hub) to remove containers after the test process dies; no registry is reachable here, so
that pull would fail before the node starts. We set TESTCONTAINERS_RYUK_DISABLED=true (and
testcontainers' config, already read at import) before any container starts, and the reaper's
work is ours: `single_node()` removes the container and its anonymous volumes on every exit (an
error, Ctrl-C, SIGTERM), and the container carries the testbed's labels
(`testbed.project=tb-single-...`), so after a SIGKILL `testbed clean` finds it like any testbed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import docker
from docker.errors import DockerException, ImageNotFound
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from harness.clients.codex import CodexClient
from harness.engine import images
from harness.engine.bootstrap import engine_answers
from harness.errors import EngineError, ImageBuildError, TopologyError
from harness.impl import DEFAULT_IMPL, Profile
from harness.impl import profile as profile_of
from harness.labels import LABEL_NODE, LABEL_ROLE, LABEL_TOPOLOGY, resource_labels
from harness.ready.readiness import debug_info_answer, log_tail, raise_if_down
from harness.selection import BuildUnderTest
from harness.sweep import sweep
from harness.topology import loader
from harness.topology.plan import capabilities_of, new_project_name, node_env
from harness.waits import Deadline, NotYet, wait_until

TOPOLOGY = "contract"  # the one-node topology the single container's node is taken from
PROJECT_PREFIX = "single"  # projects are tb-single[-<xdist worker>]-<random>
ANNOUNCE_IP = "127.0.0.1"
DEFAULT_DEADLINE_S = 60.0
PROBE_INTERVAL_S = 0.3
RYUK_DISABLED = "TESTCONTAINERS_RYUK_DISABLED"
T = TypeVar("T")


@dataclass(frozen=True)
class SingleNodeSpec:
    """Everything the container is created with; data, so a unit test can read it."""

    project: str
    node: str  # its name in the topology (and its `testbed.node` label)
    image: str
    reference: bool  # the image is the reference node, built here
    impl: str
    capabilities: tuple[str, ...]
    env: dict[str, str]
    labels: dict[str, str]
    api_port: int  # in the container
    kwargs: dict = field(default_factory=dict)  # the rest of docker's create() arguments

    @property
    def profile(self) -> Profile:
        return profile_of(self.impl)

    @property
    def container_name(self) -> str:
        return f"{self.project}-{self.node}"

    @property
    def network(self) -> str:
        return f"{self.project}_net"


def plan_single(
    build: BuildUnderTest | None = None, project: str | None = None, topology: str | Path = TOPOLOGY
) -> SingleNodeSpec:
    """The container of the topology's one storage node running `build`; creates nothing (the
    reference image's ref is computed, not built)."""
    model = loader.load(topology)
    if build is not None:
        model = build.apply(model)
    if len(model.nodes) != 1 or model.status or model.lans or model.relays:
        raise TopologyError(model.source, "nodes", "a single container runs exactly one storage node")
    node = next(iter(model.nodes.values()))
    env = node_env(node, ANNOUNCE_IP)
    profile = profile_of(node.impl or DEFAULT_IMPL)
    project = project or new_project_name(PROJECT_PREFIX)
    image = node.image or images.image_refs({node.reference_image})[node.reference_image]  # type: ignore[index]
    return SingleNodeSpec(
        project=project,
        node=node.name,
        image=image,
        reference=node.image is None,
        impl=profile.name,
        capabilities=capabilities_of(node),
        env=env,
        labels=resource_labels(project, node.kind, **{LABEL_NODE: node.name, LABEL_TOPOLOGY: model.name}),
        api_port=int(env[profile.env("api-port")]),
        kwargs={
            # as every testbed service: no capabilities, no privilege gained through setuid
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
        },
    )


@dataclass
class SingleNode:
    """A running, ready node: its spec, its REST client and its container."""

    spec: SingleNodeSpec
    api_url: str  # http://<its address on its network>:<api port><api prefix>
    container: object  # docker's Container
    info: dict  # its first good /debug/info

    @property
    def client(self) -> CodexClient:
        return CodexClient(self.api_url)


def disable_ryuk() -> None:
    """No reaper container: it would be pulled from a registry (none is reachable)."""
    os.environ[RYUK_DISABLED] = "true"
    testcontainers_config.ryuk_disabled = True


def _ensure_image(spec: SingleNodeSpec, log) -> None:
    if not engine_answers():
        raise EngineError("no Docker engine answers (make setup starts one)")
    if spec.reference:
        images.ensure_images({"codex-ref"}, log=log)  # present: a moment; missing: built offline
        return
    try:
        docker.from_env().images.get(spec.image)
    except ImageNotFound:
        raise ImageBuildError(
            f"image {spec.image} is not in the engine, and no registry is reachable to pull it: "
            "load it first (docker load -i FILE, or build it here)"
        ) from None


def _address(spec: SingleNodeSpec, container) -> str:
    container.reload()
    address = container.attrs["NetworkSettings"]["Networks"].get(spec.network, {}).get("IPAddress")
    if not address:
        raise NotYet(f"no address on {spec.network} yet")
    return address


def _wait_ready(spec: SingleNodeSpec, container, deadline: Deadline) -> tuple[str, dict]:
    """The node's API URL once `/debug/info` answers with an id and an spr; a container that
    exits fails at once, with its last log lines, as does the deadline."""
    name = spec.container_name

    def wait(what: str, probe: Callable[[], T]) -> T:
        def unless_down() -> T:
            raise_if_down(name, container)
            return probe()

        return wait_until(
            what,
            unless_down,
            deadline.remaining(),
            interval_s=PROBE_INTERVAL_S,
            culprit=partial(log_tail, container),
        )

    address = wait(f"{name}'s address on {spec.network}", lambda: _address(spec, container))
    api_url = f"http://{address}:{spec.api_port}{spec.profile.api_prefix}"
    info = wait(
        f"{name} to answer GET {api_url}/debug/info", partial(debug_info_answer, CodexClient(api_url, 5))
    )
    return api_url, info


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """A SIGTERM ends the process through the `finally` blocks (the container goes with it),
    not past them; the previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def single_node(
    spec: SingleNodeSpec, deadline_s: float = DEFAULT_DEADLINE_S, log=print
) -> Iterator[SingleNode]:
    """Start the node of `spec`, wait until it answers, yield it; remove it on every way out."""
    disable_ryuk()
    _ensure_image(spec, log)
    deadline = Deadline(deadline_s)
    # `network` goes with the other create() arguments: DockerContainer's own parameter wants a
    # testcontainers Network, and without one testcontainers picks a network it guesses we are on.
    node = DockerContainer(spec.image, env=dict(spec.env), name=spec.container_name).with_kwargs(
        labels=spec.labels, network=spec.network, **spec.kwargs
    )
    with _sigterm_unwinds():
        try:
            _create_network(spec)
            node.start()
            container = node.get_wrapped_container()
            api_url, info = _wait_ready(spec, container, deadline)
            yield SingleNode(spec, api_url, container, info)
        finally:
            _remove(spec)


def _create_network(spec: SingleNodeSpec) -> None:
    labels = {**spec.labels, LABEL_ROLE: "network"}
    docker.from_env().networks.create(spec.network, driver="bridge", internal=True, labels=labels)


def _remove(spec: SingleNodeSpec) -> None:
    """Everything labelled with the container's project (the container and its anonymous
    volumes, its network), even when `start()` failed before handing the container over; with
    no engine to ask, `testbed clean` finds them by the same labels later."""
    with contextlib.suppress(DockerException):
        sweep(spec.project)
