"""The DCUtR outcome matrix without docker: schedule, expectations, generated topology, report."""

from __future__ import annotations

import itertools
import json

import pytest

from harness.experiments import natmatrix
from harness.experiments.natmatrix import PROFILES, Cell
from harness.topology import loader


def test_the_schedule_meets_every_pair_once_and_no_node_twice_in_a_round() -> None:
    rounds = natmatrix.schedule(PROFILES)
    pairs = [pair for round_ in rounds for pair in round_]
    assert sorted(pairs) == sorted(itertools.product(PROFILES, PROFILES))
    for round_ in rounds:
        assert len({d for d, _ in round_}) == len({listener for _, listener in round_}) == len(PROFILES)


def test_expectations_follow_table_b() -> None:
    relayed = {
        (d, li) for d, li in itertools.product(PROFILES, PROFILES) if natmatrix.expected(d, li) == "relayed"
    }
    # the negative controls (the cells that stay relayed in Table B of docs/nat.md), and nothing else
    assert relayed == {
        ("port-restricted", "symmetric"),
        ("symmetric", "port-restricted"),
        ("symmetric", "symmetric"),
    }
    assert all(natmatrix.expected("public", li) == "direct" for li in PROFILES)
    assert all(natmatrix.expected(d, "full-cone") == "direct" for d in PROFILES)


def test_the_committed_topology_is_the_generated_one_and_valid() -> None:
    committed = loader.TOPOLOGIES_DIR / "nat-matrix.yaml"
    assert committed.read_text() == natmatrix.topology_yaml()
    topology = loader.load("nat-matrix")
    assert topology.peering == "none"
    assert set(topology.relays) == {"relay"}
    for profile in PROFILES:
        for role in ("dialer", "listener"):
            node = topology.nodes[natmatrix.node_name(role, profile)]
            assert node.relay == "relay"
            network = topology.networks[node.network]
            assert network.kind == ("wan" if profile == "public" else "lan")
            assert network.nat == (None if profile == "public" else profile)


def cell(dialer: str, listener: str, outcome: str) -> Cell:
    return Cell(dialer, listener, natmatrix.expected(dialer, listener), outcome, "-", None, 1.5, 0.4)


def test_a_differing_firm_cell_fails_the_matrix_and_is_marked() -> None:
    cells = [cell(d, li, natmatrix.expected(d, li)) for d, li in itertools.product(PROFILES, PROFILES)]
    assert natmatrix.agrees(cells)
    cells[-1] = cell("symmetric", "symmetric", "direct")  # a leaking NAT
    assert not natmatrix.agrees(cells)
    markdown = natmatrix.to_markdown(cells)
    assert "| symmetric | direct | direct | direct | relayed | direct ! |" in markdown
    assert "| symmetric | symmetric | relayed | direct | - | - | 1.50 | 0.40 | DIFFERS |" in markdown
    assert json.loads(natmatrix.to_json(cells))[-1]["agrees"] is False


def test_a_timing_sensitive_miss_is_reported_but_does_not_fail() -> None:
    cells = [cell(d, li, natmatrix.expected(d, li)) for d, li in itertools.product(PROFILES, PROFILES)]
    index = next(i for i, c in enumerate(cells) if (c.dialer, c.listener) == ("symmetric", "restricted-cone"))
    cells[index] = cell("symmetric", "restricted-cone", "relayed")
    assert natmatrix.agrees(cells)
    assert "differs (timing-sensitive in table B)" in natmatrix.to_markdown(cells)


def test_cgnats_are_expected_to_behave_like_their_outer_nat() -> None:
    assert natmatrix.expected("cgnat", "port-restricted") == "direct"
    assert natmatrix.expected("cgnat", "cgnat-symmetric") == "relayed"
    assert natmatrix.expected("cgnat-symmetric", "public") == "direct"
    assert not cell("public", "cgnat-symmetric", "relayed").firm  # tolerated like public x symmetric
    assert cell("cgnat", "cgnat-symmetric", "direct").firm


def test_profiles_on_the_command_line_are_checked() -> None:
    assert natmatrix.parse_profiles("cgnat, port-restricted") == ("cgnat", "port-restricted")
    for bad in ("public", "public,public", "public,udp-blocked", "public,carrier-pigeon"):
        with pytest.raises(ValueError, match="two or more distinct profiles"):
            natmatrix.parse_profiles(bad)
