"""The repro evidence: a bundle holds the scenario, every given file or folder and a manifest, all
under one folder; the timeline plot is a PNG."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

from harness.errors import TestbedError
from harness.experiments.repro.bundle import plot_timeline, write_bundle
from harness.experiments.repro.timeline import Event


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    file = tmp_path / "relay-limit.yaml"
    file.write_text("topology: nat-relay\n")
    return file


def test_a_bundle_holds_the_scenario_the_files_and_a_manifest(tmp_path: Path, scenario_file: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "routers").mkdir(parents=True)
    (logs / "codex-1.log").write_text("started\n")
    (logs / "routers" / "home.log").write_text("rebooted\n")
    pcap = tmp_path / "home.pcap"
    pcap.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))

    dest = write_bundle(
        tmp_path / "out" / "relay-limit-run1.tar.gz",
        scenario_file,
        {"timeline.json": "[]", "verdicts.txt": b"REPRODUCED\n", "logs": logs, "pcap/home.pcap": pcap},
    )

    assert dest == tmp_path / "out" / "relay-limit-run1.tar.gz"
    assert not dest.with_name(dest.name + ".part").exists()
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        assert names[0] == "relay-limit-run1"
        assert set(names) == {
            "relay-limit-run1",
            "relay-limit-run1/relay-limit.yaml",
            "relay-limit-run1/timeline.json",
            "relay-limit-run1/verdicts.txt",
            "relay-limit-run1/logs",
            "relay-limit-run1/logs/codex-1.log",
            "relay-limit-run1/logs/routers",
            "relay-limit-run1/logs/routers/home.log",
            "relay-limit-run1/pcap/home.pcap",
            "relay-limit-run1/MANIFEST.txt",
        }
        read = {name: tar.extractfile(name).read() for name in names if tar.getmember(name).isfile()}
    assert read["relay-limit-run1/relay-limit.yaml"] == b"topology: nat-relay\n"
    assert read["relay-limit-run1/timeline.json"] == b"[]"
    assert read["relay-limit-run1/logs/routers/home.log"] == b"rebooted\n"
    assert read["relay-limit-run1/pcap/home.pcap"] == pcap.read_bytes()
    manifest = read["relay-limit-run1/MANIFEST.txt"].decode().splitlines()
    assert manifest[0].startswith("relay-limit-run1: the evidence of a repro run")
    listed = {line.split()[1]: int(line.split()[0]) for line in manifest[2:]}
    assert listed == {
        "relay-limit.yaml": 20,
        "timeline.json": 2,
        "verdicts.txt": 11,
        "logs/codex-1.log": 8,
        "logs/routers/home.log": 9,
        "pcap/home.pcap": 24,
    }


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../up", "logs/../../up", "", "MANIFEST.txt", "relay-limit.yaml"]
)
def test_a_member_name_must_stay_inside_the_bundle(tmp_path: Path, scenario_file: Path, name: str) -> None:
    with pytest.raises(ValueError, match="member"):
        write_bundle(tmp_path / "b.tar.gz", scenario_file, {name: "x"})
    assert list(tmp_path.glob("b.tar.gz*")) == []


def test_a_bundle_is_a_tar_gz_and_its_files_exist(tmp_path: Path, scenario_file: Path) -> None:
    with pytest.raises(ValueError, match=r"a bundle is a <name>\.tar\.gz file, not 'b\.zip'"):
        write_bundle(tmp_path / "b.zip", scenario_file, {})
    with pytest.raises(TestbedError, match=r"b\.tar\.gz: logs: .*absent does not exist"):
        write_bundle(tmp_path / "b.tar.gz", scenario_file, {"logs": tmp_path / "absent"})
    assert list(tmp_path.glob("b.tar.gz*")) == []


EVENTS = [
    Event(0.0, "step", "upload-0", {"index": 0, "action": "upload", "phase": "begin"}),
    Event(2.0, "download", "fetch", {"node": "codex-2", "dataset": "a", "phase": "begin"}),
    Event(3.0, "download", "early", {"node": "codex-1", "dataset": "a", "phase": "begin"}),
    Event(4.0, "download", "early", {"phase": "end", "ok": True, "error": None, "bytes": 9, "seconds": 1}),
    Event(5.0, "sample", "codex-1", {"reserved": True, "direct_peers": []}),
    Event(5.0, "sample", "codex-2", {"reserved": None, "direct_peers": []}),
    Event(10.0, "fault", "home", {"fault": "router_reboot", "phase": "begin", "down_s": 10}),
    Event(12.0, "fault", "relay", {"fault": "kill", "phase": "begin"}),
    Event(15.0, "sample", "codex-1", {"reserved": False, "direct_peers": ["codex-2"]}),
    Event(20.0, "fault", "home", {"fault": "router_reboot", "phase": "end", "down_s": 10}),
    Event(
        83.2, "download", "fetch", {"phase": "end", "ok": False, "error": "reset", "bytes": 0, "seconds": 81}
    ),
    Event(90.0, "download", "never", {"node": "codex-1", "dataset": "a", "phase": "begin"}),
]


def test_the_timeline_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot_timeline(EVENTS, tmp_path / "plots" / "timeline.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_timeline([], tmp_path / "empty.png").read_bytes().startswith(b"\x89PNG")


def test_the_plot_without_matplotlib_says_which_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with pytest.raises(
        TestbedError, match=r"needs matplotlib, of the load extra: pip install 'codex-testbed\[load\]'"
    ):
        plot_timeline(EVENTS, tmp_path / "timeline.png")
