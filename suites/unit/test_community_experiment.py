"""The community-scale archive experiment's pure parts: its topology as data (checked by the
loader), the members' NAT classes, the links each member's node dials, and the report."""

from __future__ import annotations

import random

from harness.clients.status import StatusRpcError
from harness.experiments import community
from harness.experiments.community import CLASSES, Settings, _connect, markdown, member_names


def test_members_spread_round_robin_over_the_nat_classes() -> None:
    classes = member_names(20)
    assert len(classes) == 20
    assert {nat: list(classes.values()).count(nat) for nat in CLASSES} == dict.fromkeys(CLASSES, 5)


def test_the_topology_puts_each_natted_member_behind_its_own_router() -> None:
    topology = community.topology(Settings(members=8))
    assert topology.status["owner"].network == "owner-home"
    assert topology.networks["owner-home"].nat == "port-restricted"
    for name, nat in member_names(8).items():
        peer = topology.status[name]
        assert peer.embedded and peer.relay == "relay"
        if nat == "public":
            assert peer.network == "wan"
        else:
            assert peer.network == f"home-{name}" and topology.networks[peer.network].nat == nat
    assert topology.relays["relay"].profile == "default"
    assert not topology.nodes, "no storage node but the peers' own"


def test_a_status_backend_image_embeds_its_own_storage_and_finds_its_own_relays() -> None:
    topology = community.topology(Settings(members=4, status_image="statusgo-local:latest"))
    assert {peer.image for peer in topology.status.values()} == {"statusgo-local:latest"}
    assert all(peer.relay is None for peer in topology.status.values())


class FakePeer:
    def __init__(self, name: str, dials: list, unreachable: str = "") -> None:
        self.name, self.dials, self.unreachable = name, dials, unreachable

    def rpc(self, method: str, *params):
        if method == "wakuext_debug":
            return {"id": self.name, "addrs": [f"/ip4/1.2.3.4/tcp/8070/p2p/{self.name}"]}
        self.dials.append(params[0])
        if params[0] == self.unreachable:
            raise StatusRpcError(method, {"code": -32000, "message": "dial timed out"})
        return None


def test_every_member_dials_the_owner_and_its_seeded_share_of_members() -> None:
    dials: list[str] = []
    peers = {name: FakePeer(name, dials) for name in ("owner", "a", "b", "c", "d")}
    first = _connect(peers, ["a", "b", "c", "d"], links=2, rng=random.Random(7))
    assert first == {"dials": 4 + 4 * 2, "connected": 12, "failed": {}}
    assert dials.count("owner") == 4
    again: list[str] = []
    peers = {name: FakePeer(name, again) for name in peers}
    _connect(peers, ["a", "b", "c", "d"], links=2, rng=random.Random(7))
    assert sorted(again) == sorted(dials), "the same seed, the same links"


def test_a_failed_storage_dial_is_counted_with_what_it_answered() -> None:
    dials: list[str] = []
    peers = {name: FakePeer(name, dials, unreachable="owner") for name in ("owner", "a", "b")}
    result = _connect(peers, ["a", "b"], links=1, rng=random.Random(7))
    assert result["dials"] == 4 and result["connected"] == 2
    assert result["failed"] == {
        "a -> owner": "wakuext_connect: -32000 dial timed out",
        "b -> owner": "wakuext_connect: -32000 dial timed out",
    }


def test_the_report_gives_each_class_its_count_and_percentiles_and_the_owners_share() -> None:
    by_class = {nat: {"members": 1, "joined": 1, "got_history": 0} for nat in CLASSES}
    by_class["public"] = {"members": 1, "joined": 1, "got_history": 1, "p50_s": 3.0, "p95_s": 3.0}
    phase = {"by_class": by_class, "bytes_served": {"owner": 30e6, "members": 90e6}, "owner_left_after": None}
    text = markdown({"settings": Settings(members=4).__dict__, "phases": {"online": phase}})
    assert "| public | 1 | 1 | 1 | 3.0 | 3.0 |" in text
    assert "| symmetric | 1 | 1 | 0 | - | - |" in text
    assert "owner 30 MB, members 90 MB; the owner's share 25%" in text
    phase["storage_dials"] = {
        "dials": 3,
        "connected": 1,
        "failed": {"a -> b": "timed out", "b -> c": "timed out"},
    }
    text = markdown({"settings": Settings(members=4).__dict__, "phases": {"online": phase}})
    assert "Storage dials by hand: 1 of 3 connected.\n- 2 failed: timed out" in text
