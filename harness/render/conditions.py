"""What "ready" means for one service, as data: the conditions a ServiceSpec declares.

harness/render/services.py gives every service of a Plan its `ready` conditions; readiness
(harness/ready/readiness.py) waits for them kind by kind, every service's conditions of one kind
together. A condition says what must hold, not where to look: the wait reads the service's
addresses from the Plan by its name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Running:
    """The container runs. One that exits, or that its compose healthcheck calls unhealthy,
    fails readiness at once (during the waits for the app probes, too)."""


@dataclass(frozen=True)
class AnswersDebugInfo:
    """`GET /debug/info` answers with a peer id and an `spr:` record: the node healthcheck's own
    probe, polled from the host."""


@dataclass(frozen=True)
class Announces:
    """The node's announced addresses include one on `ip` (unless empty: a node behind a NAT that
    finds its own by AutoNAT), and its peer id is its own (no two nodes share one)."""

    ip: str


@dataclass(frozen=True)
class NatAsDeclared:
    """The referee, from behind this router, classifies its LAN as the topology declares it."""


@dataclass(frozen=True)
class PeeredWith:
    """The node is connected to `peers`, as its public signal `via` shows (PEERS_GAUGE or
    CONNECTIONS, its profile's `peering`); readiness dials `dials` from it first."""

    peers: tuple[str, ...]
    dials: tuple[str, ...]  # the peers it dials itself (`GET /connect/{peer}`); the others dial it
    via: str


@dataclass(frozen=True)
class CircuitReservation:
    """The node holds a slot on `relay`: its `/debug/info` lists a `/p2p-circuit` address."""

    relay: str


@dataclass(frozen=True)
class StatusHealth:
    """A status peer answers `POST /health` (status-backend's readiness probe)."""


@dataclass(frozen=True)
class FleetAnswers:
    """The Waku fleet node answers `GET /info` with its peer id and addresses."""


Condition = (
    Running
    | AnswersDebugInfo
    | Announces
    | NatAsDeclared
    | PeeredWith
    | CircuitReservation
    | StatusHealth
    | FleetAnswers
)
