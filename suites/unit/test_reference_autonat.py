"""The reference node's AutoNAT client, as nim-libp2p's AutonatService with logos-storage-nim's
`nat-*` flags: whom a round asks, when it stops asking, how answers become a verdict, that
an announced node (`--nat=extip:`) runs no client at all, and which nodes serve."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from codexref import config
from codexref.config import AutonatSettings
from codexref.node import Node
from codexref.reachability import autonat_servers
from libp2p.connection_types import ConnectionType
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID
from libp2p.peer.id import ID
from libp2p.rcmgr.metrics import Direction

UPSTREAM_DEFAULTS = AutonatSettings(
    schedule_interval_s=120, peers_to_ask=3, max_queue_size=3, min_confidence=0.6
)
PEERS = [ID(bytes([0, 4, n, 0, 0, 0])) for n in range(5)]


def _conn(direction: Direction, relayed: bool = False) -> SimpleNamespace:
    kind = ConnectionType.RELAYED if relayed else ConnectionType.DIRECT
    return SimpleNamespace(direction=direction, muxed_conn=SimpleNamespace(get_connection_type=lambda: kind))


def _node(tmp_path: Path, *flags: str) -> Node:
    argv = ["--impl", "logos-storage", "--data-dir", str(tmp_path), "--listen-ip", "127.0.0.1"]
    return Node(config.load([*argv, *flags], environ={}))


def test_only_peers_we_dialled_directly_and_that_never_dialled_us_are_asked() -> None:
    dialled, dialled_us, both_ways, only_relayed, relayed_then_dialled = PEERS
    connections = {
        dialled: [_conn(Direction.OUTBOUND)],
        dialled_us: [_conn(Direction.INBOUND)],
        both_ways: [_conn(Direction.OUTBOUND), _conn(Direction.INBOUND)],
        only_relayed: [_conn(Direction.OUTBOUND, relayed=True)],
        relayed_then_dialled: [_conn(Direction.INBOUND, relayed=True), _conn(Direction.OUTBOUND)],
    }
    assert autonat_servers(connections) == [dialled, relayed_then_dialled]


def test_a_verdict_needs_its_share_of_the_whole_queue_and_later_answers_overturn_it(tmp_path: Path) -> None:
    reachability = _node(tmp_path).reachability
    assert reachability.settings == UPSTREAM_DEFAULTS, "upstream's defaults: 3 peers, 3 answers, 0.6"
    verdicts: list[bool] = []
    reachability.on_change = verdicts.append
    reachability._weigh(True)
    assert reachability.reachable is None, "1 of 3 is below 0.6 even with the queue not full"
    reachability._weigh(True)
    assert reachability.reachable is True
    reachability._weigh(False)
    assert reachability.reachable is True, "2 of the last 3 still reached us"
    reachability._weigh(False)
    assert reachability.reachable is False, "the oldest answer left the queue"
    assert verdicts == [True, False]


def test_a_round_asks_in_turn_until_enough_servers_answered(tmp_path: Path) -> None:
    reachability = _node(tmp_path, "--nat-num-peers-to-ask", "2").reachability
    answers = {PEERS[0]: None, PEERS[1]: False, PEERS[2]: None, PEERS[3]: False, PEERS[4]: True}
    asked: list[ID] = []

    async def ask(server: ID) -> bool | None:
        asked.append(server)
        return answers[server]

    reachability.servers = lambda: list(answers)  # type: ignore[method-assign]
    reachability._ask = ask  # type: ignore[method-assign]
    trio.run(reachability.check)
    answered = [peer for peer in asked if answers[peer] is not None]
    assert len(answered) == 2 and asked[-1] in answered, f"stopped at the second answer: {asked}"
    assert set(reachability.verdicts) == set(answered)
    assert list(reachability.answers) == [answers[peer] for peer in answered]


def test_an_announced_node_runs_no_autonat_client_and_the_flags_are_checked(tmp_path: Path) -> None:
    assert _node(tmp_path / "a", "--nat", "extip:127.0.0.1").reachability.client is False
    assert _node(tmp_path / "b").reachability.client is True
    fast = _node(tmp_path / "c", "--nat-max-queue-size", "1", "--nat-min-confidence", "1.0").reachability
    assert (fast.settings.max_queue_size, fast.settings.min_confidence) == (1, 1.0)
    for flag, value in (("--nat-num-peers-to-ask", "0"), ("--nat-min-confidence", "1.5")):
        with pytest.raises(SystemExit):
            _node(tmp_path / "d", flag, value)


def test_only_an_announced_logos_node_started_as_a_server_answers_autonat(tmp_path: Path) -> None:
    """Upstream serves AutoNAT only with the hidden `--autonat-server`, which needs
    `--nat=extip:`; the Codex era's AutoNAT is a testbed extension every node serves."""

    def serves(node: Node) -> bool:
        return AUTONAT_PROTOCOL_ID in node.host.get_mux().handlers

    announced = ("--nat", "extip:127.0.0.1")
    assert serves(_node(tmp_path / "a", *announced, "--autonat-server"))
    assert not serves(_node(tmp_path / "b", *announced))
    assert not serves(_node(tmp_path / "c"))
    codex_era = [
        "--impl",
        "codex",
        "--data-dir",
        str(tmp_path / "d"),
        "--listen-addrs",
        "/ip4/127.0.0.1/tcp/0",
    ]
    assert serves(Node(config.load(codex_era, environ={})))
    with pytest.raises(SystemExit, match="needs --nat=extip"):
        _node(tmp_path / "e", "--autonat-server")
