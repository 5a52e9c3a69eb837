"""What the testbed puts on everything it creates, and how it finds those things again.

Every container, network and volume carries `testbed.project=<project>`; images carry
`testbed.image=true`. Teardown, readiness, plumbing and status select resources by these labels
only, and always match a project name exactly: an engine is often shared, so `tb` must never
reach `tb-basic-1a2b3c`, and an empty name must never mean "every project".
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import docker
from docker.models.containers import Container

from harness.errors import TestbedError

if TYPE_CHECKING:  # the plan module imports this one (through harness.paths)
    from harness.topology.plan import Plan

LABEL_PROJECT = "testbed.project"
LABEL_ROLE = "testbed.role"
LABEL_CREATED = "testbed.created"
LABEL_TOPOLOGY = "testbed.topology"
LABEL_NODE = "testbed.node"
IMAGE_LABELS = {"testbed.image": "true"}

# Compose v2's rule for project names (v1 accepts a superset), bounded so that bridge, volume
# and folder names derived from it stay short. Nothing in it can climb out of a folder.
PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class ProjectNameError(TestbedError):
    """A project name that compose would refuse, or that could name a path outside our folders."""


def check_project(name: str) -> str:
    """`name` if it is a valid project name; ProjectNameError (saying why) otherwise."""
    if not isinstance(name, str) or not PROJECT_RE.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 70 else repr(name)[:60] + f"... ({len(name)} characters)"
        raise ProjectNameError(
            f"{shown} is not a project name: 1 to 63 of a-z, 0-9, '-' and '_', starting with a "
            "letter or digit (testbed status lists the projects on this engine)"
        )
    return name


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def resource_labels(project: str, role: str, created: str | None = None, **extra: str) -> dict[str, str]:
    """The labels of one resource of `project` (a container, network or volume)."""
    return {
        LABEL_PROJECT: check_project(project),
        LABEL_ROLE: role,
        LABEL_CREATED: created or now_utc(),
        **extra,
    }


def plan_labels(plan: Plan, role: str) -> dict[str, str]:
    """The labels of a resource of `plan`'s testbed in `role`: those its compose file gives every
    service, network and volume, and what else joins the testbed (load generators) carries."""
    return resource_labels(plan.project, role, plan.created, **{LABEL_TOPOLOGY: plan.topology})


def project_filter(project: str | None) -> dict:
    """A docker `filters` value: exactly `project`'s resources, or every testbed's when None."""
    if project is None:
        return {"label": LABEL_PROJECT}
    return {"label": f"{LABEL_PROJECT}={check_project(project)}"}


def project_of(resource) -> str | None:
    labels = resource.labels if hasattr(resource, "labels") else resource.attrs.get("Labels")
    return (labels or {}).get(LABEL_PROJECT)


def find_containers(client: docker.DockerClient, project: str) -> dict[str, Container]:
    """A project's containers by node name (helpers come and go: a vanished one is skipped)."""
    containers = client.containers.list(all=True, filters=project_filter(project), ignore_removed=True)
    return {c.labels.get(LABEL_NODE, c.name): c for c in containers}


def find_network(client: docker.DockerClient, project: str, network: str) -> str | None:
    """The engine's name of the network a project's compose file calls `network`, found by the
    labels compose gives each network it creates, or None."""
    found = client.networks.list(
        filters={
            "label": [
                f"com.docker.compose.project={check_project(project)}",
                f"com.docker.compose.network={network}",
            ]
        }
    )
    return found[0].name if found else None
