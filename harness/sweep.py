"""Label-based cleanup: remove every container, network and volume the harness ever created.

Idempotent, and it works without any state from the run that created the resources (after a
crash or `kill -9` there is none): the labels on the resources are the only record needed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, NotFound

from harness.paths import generated_dir
from harness.render.compose import LABEL_PROJECT
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


def _label_filter(project: str | None) -> dict:
    return {"label": f"{LABEL_PROJECT}={project}" if project else LABEL_PROJECT}


def labelled_projects(client: docker.DockerClient | None = None) -> set[str]:
    """Every project that still has a labelled container, network or volume."""
    client = client or docker.from_env()
    flt = _label_filter(None)
    found = {c.labels.get(LABEL_PROJECT) for c in client.containers.list(all=True, filters=flt)}
    found |= {n.attrs["Labels"].get(LABEL_PROJECT) for n in client.networks.list(filters=flt)}
    found |= {(v.attrs.get("Labels") or {}).get(LABEL_PROJECT) for v in client.volumes.list(filters=flt)}
    return {p for p in found if p}


def orphaned_projects(client: docker.DockerClient | None = None) -> set[str]:
    """Projects with labelled networks or volumes but no container: what a crash leaves behind."""
    client = client or docker.from_env()
    flt = _label_filter(None)
    with_containers = {c.labels.get(LABEL_PROJECT) for c in client.containers.list(all=True, filters=flt)}
    return labelled_projects(client) - with_containers


def leftovers(project: str | None = None, client: docker.DockerClient | None = None) -> dict[str, int]:
    client = client or docker.from_env()
    flt = _label_filter(project)
    return {
        "containers": len(client.containers.list(all=True, filters=flt)),
        "networks": len(client.networks.list(filters=flt)),
        "volumes": len(client.volumes.list(filters=flt)),
    }


def _sweep_once(client: docker.DockerClient, project: str | None, report: SweepReport) -> None:
    flt = _label_filter(project)
    for container in client.containers.list(all=True, filters=flt):
        try:
            container.remove(force=True, v=True)
            report.containers.append(container.name)
        except NotFound:
            pass
        except APIError as exc:
            report.errors.append(f"container {container.name}: {exc.explanation}")
    for network in client.networks.list(filters=flt):
        try:
            network.reload()
            for attached in network.attrs.get("Containers") or {}:
                network.disconnect(attached, force=True)
            network.remove()
            report.networks.append(network.name)
        except NotFound:
            pass
        except APIError as exc:
            report.errors.append(f"network {network.name}: {exc.explanation}")
    for volume in client.volumes.list(filters=flt):
        try:
            volume.remove(force=True)
            report.volumes.append(volume.name)
        except NotFound:
            pass
        except APIError as exc:
            report.errors.append(f"volume {volume.name}: {exc.explanation}")


def sweep(project: str | None = None, attempts: int = 5) -> SweepReport:
    """Remove a project's resources (all projects' when None); repeat while something is left,
    since a compose process that was starting up may still be creating resources."""
    client = docker.from_env()
    projects = {project} if project else labelled_projects(client)
    report = SweepReport()
    for attempt in range(attempts):
        report.errors.clear()
        _sweep_once(client, project, report)
        if not any(leftovers(project, client).values()):
            break
        time.sleep(0.5 * (attempt + 1))
    for name in projects:
        subnets.release(name)
        shutil.rmtree(generated_dir(name), ignore_errors=True)
    return report
