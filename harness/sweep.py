"""Label-based cleanup: remove every container, network and volume the harness ever created.

Idempotent, and it works without any state from the run that created the resources (after a
crash or `kill -9` there is none): the labels on the resources are the only record needed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, NotFound

from harness.labels import ProjectNameError, check_project, project_filter, project_of
from harness.net import hostfw
from harness.paths import generated_dir
from harness.topology import subnets


@dataclass
class SweepReport:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes)

    def summary(self) -> str:
        text = (
            f"removed {len(self.containers)} containers, {len(self.networks)} networks, "
            f"{len(self.volumes)} volumes"
        )
        return text + (f"; {len(self.errors)} errors: " + "; ".join(self.errors) if self.errors else "")


def _labelled(client: docker.DockerClient, project: str | None) -> dict[str, list]:
    """Labelled resources by kind, in the order they must be removed (every project's when None)."""
    flt = project_filter(project)
    return {
        # A container can go between docker listing it and us inspecting it (a route helper
        # finishing, a concurrent teardown): it is gone, not an error.
        "containers": client.containers.list(all=True, filters=flt, ignore_removed=True),
        "networks": client.networks.list(filters=flt),
        "volumes": client.volumes.list(filters=flt),
    }


def labelled_projects(client: docker.DockerClient | None = None) -> set[str]:
    """Every project that still has a labelled container, network or volume."""
    resources = _labelled(client or docker.from_env(), None)
    return {p for kind in resources.values() for r in kind if (p := project_of(r))}


def orphaned_projects(client: docker.DockerClient | None = None) -> set[str]:
    """Projects with labelled networks or volumes but no container: what a crash leaves behind."""
    client = client or docker.from_env()
    with_containers = {project_of(c) for c in _labelled(client, None)["containers"]}
    return labelled_projects(client) - with_containers


def leftovers(project: str | None = None, client: docker.DockerClient | None = None) -> dict[str, int]:
    return {kind: len(found) for kind, found in _labelled(client or docker.from_env(), project).items()}


# What the engine answers when it still records an endpoint of a container that is gone (a
# docker 20.10 fault, seen once after a NAT suite's teardown): only an engine restart frees it.
STALE_ENDPOINT_HINT = (
    "the engine still records an endpoint of a removed container: restart the engine "
    "(stop dockerd; `make setup` starts it again), then `testbed clean`"
)


def _remove_network(network) -> None:
    network.reload()
    attached = network.attrs.get("Containers") or {}
    for container in attached:
        network.disconnect(container, force=True)
    try:
        network.remove()
    except APIError as exc:
        if not attached and "active endpoints" in str(exc.explanation):
            explanation = f"{exc.explanation} ({STALE_ENDPOINT_HINT})"
            raise APIError(str(exc), response=exc.response, explanation=explanation) from exc
        raise


_REMOVE = {
    "containers": lambda container: container.remove(force=True, v=True),
    "networks": _remove_network,
    "volumes": lambda volume: volume.remove(force=True),
}


def _sweep_once(client: docker.DockerClient, project: str | None, report: SweepReport) -> None:
    for kind, resources in _labelled(client, project).items():
        for resource in resources:
            try:
                _REMOVE[kind](resource)
                getattr(report, kind).append(resource.name)
            except NotFound:
                pass  # removed meanwhile (compose down, another sweep): that is the goal
            except APIError as exc:
                report.errors.append(f"{kind} {resource.name}: {exc.explanation}")


def sweep(project: str | None = None, attempts: int = 5) -> SweepReport:
    """Remove a project's resources (all projects' when None, never for an empty name); repeat
    while something is left, since a compose process that was starting up may still be creating
    resources. Firewall rules, subnet reservations and the generated folder go by exact name."""
    client = docker.from_env()
    projects = {check_project(project)} if project is not None else labelled_projects(client)
    report = SweepReport()
    for attempt in range(attempts):
        report.errors.clear()
        _sweep_once(client, project, report)
        if not any(leftovers(project, client).values()):
            break
        time.sleep(0.5 * (attempt + 1))
    hostfw.release(project)
    for name in projects:
        subnets.release(name)
        # A label can carry any string another tool put there: only valid names name a folder.
        with contextlib.suppress(ProjectNameError):
            shutil.rmtree(generated_dir(name), ignore_errors=True)
    return report
