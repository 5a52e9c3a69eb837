"""The host's neighbour table limits: read, described, raised (never lowered), and a warning
before a topology that would overflow them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.net import neighbours
from harness.topology import loader


def limits_dir(tmp_path: Path, thresh1: int, thresh2: int, thresh3: int) -> Path:
    for name, value in (("gc_thresh1", thresh1), ("gc_thresh2", thresh2), ("gc_thresh3", thresh3)):
        (tmp_path / name).write_text(f"{value}\n")
    return tmp_path


def star(nodes: int):
    document = {
        "name": "star",
        "peering": "none",
        "nodes": {f"n{i:03d}": {"kind": "codex"} for i in range(nodes)},
    }
    return loader.parse(yaml.safe_dump(document), Path("<star>"))


def test_the_kernel_defaults_are_described_as_too_low_for_more_than_32_containers(tmp_path) -> None:
    current = neighbours.limits(limits_dir(tmp_path, 128, 512, 1024))
    assert current == {"gc_thresh3": 1024, "gc_thresh2": 512, "gc_thresh1": 128}
    raised, detail = neighbours.describe(current)
    assert not raised
    assert "about 32 containers" in detail and "doctor --fix" in detail


def test_raising_writes_the_wanted_values_and_never_lowers_one(tmp_path) -> None:
    directory = limits_dir(tmp_path, 128, 65536, 1024)
    message = neighbours.raise_limits(directory)
    assert neighbours.limits(directory) == {"gc_thresh3": 32768, "gc_thresh2": 65536, "gc_thresh1": 4096}
    assert "gc_thresh3 1024 -> 32768" in message and "gc_thresh2" not in message
    assert neighbours.raise_limits(directory) == "neighbour table: limits already raised"
    assert neighbours.describe(neighbours.limits(directory))[0]


def test_a_kernel_that_is_not_this_hosts_is_left_alone(tmp_path) -> None:
    assert neighbours.limits(tmp_path / "absent") is None
    assert neighbours.describe(None)[0]
    assert "left alone" in neighbours.raise_limits(tmp_path / "absent")


def test_a_limit_that_cannot_be_written_says_which_sysctl_to_set(tmp_path, monkeypatch) -> None:
    directory = limits_dir(tmp_path, 128, 512, 1024)

    def refuse(self, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    message = neighbours.raise_limits(directory)
    assert "sysctl -w net.ipv4.neigh.default.gc_thresh3=32768" in message


@pytest.mark.parametrize(("nodes", "warned"), [(32, False), (33, True)])
def test_up_warns_before_a_topology_the_table_cannot_hold(tmp_path, nodes, warned) -> None:
    directory = limits_dir(tmp_path, 128, 512, 1024)
    lines: list[str] = []
    neighbours.warn_if_short(star(nodes), lines.append, directory)
    assert bool(lines) is warned
    if warned:
        assert f"{nodes * nodes} neighbour table entries" in lines[0] and "gc_thresh3" in lines[0]
