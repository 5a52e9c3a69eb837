"""The DHT experiment's pure parts (harness/experiments/dht.py): its topology, the counters'
network totals, the fit of the model's constants and the report, on made-up measurements."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from harness.errors import TestbedError
from harness.experiments import dht
from harness.selection import BuildUnderTest
from harness.topology import loader
from harness.topology.model import HEALTHCHECK_INTERVAL_S, HEALTHCHECK_RARELY_S


def test_the_topology_is_n_logos_nodes_unpeered_with_t_only_for_the_reference_node() -> None:
    settings = dht.Settings(interval_s=45)
    reference = dht.topology(settings, 16, BuildUnderTest())
    assert len(reference.nodes) == 16 and reference.peering == "none" and not reference.edges()
    node = reference.nodes["d000"]
    assert node.impl == "logos-storage" and node.flags == {"advertise-interval": "45s"}
    image = dht.topology(settings, 4, BuildUnderTest(image="me/storage:rc1"))
    assert image.nodes["d003"].flags == {}, "upstream has no --advertise-interval"


def test_bad_settings_are_named_and_the_codex_era_is_refused(tmp_path) -> None:
    problems = dht.Settings(sizes=(1, 16), datasets=(20, 5), interval_s=0).problems()
    assert problems == [
        "--sizes 1: at least 2 nodes",
        "--datasets: increasing values (datasets are added up to each)",
        "--interval: at least 1 s",
    ]
    with pytest.raises(TestbedError, match="Logos era"):
        dht.run(dht.Settings(sizes=(2,)), BuildUnderTest(impl="codex"), out=tmp_path)


def test_a_delta_is_the_network_total_by_message_type() -> None:
    before = {"a": {(dht.SENT, "findNode"): 100.0}, "b": {}}
    after = {
        "a": {(dht.SENT, "findNode"): 150.0, (dht.SENT, "addProvider"): 40.0},
        "b": {(dht.SENT, "findNode"): 10.0, (dht.RECEIVED, "findNode"): 99.0},
    }
    assert dht.delta(before, after, dht.SENT) == {"findNode": 60.0, "addProvider": 40.0}


def _summary(a: float, b: float, c0: float, c1: float) -> dict:
    """Measurements that lie exactly on maintenance a + b log2 N and per key c0 + c1 log2 N."""
    sizes = {}
    for n in (16, 32, 64):
        x = math.log2(n)
        phases = [
            {"phase": "join", "bytes_per_node": 5000.0},
            {"phase": "idle", "rate_per_node": a + b * x},
            {
                "phase": "upload C=5",
                "first_bytes_per_key": c0 + c1 * x,
                "add_provider_per_key": min(n - 1, 20),
                "datasets": 5,
            },
            {
                "phase": "steady C=5",
                "rate_per_node": a + b * x + 5 / 60 * (c0 + c1 * x),
                "bytes_per_key": 2 * (c0 + c1 * x),  # a second estimate, not the fit's
                "datasets": 5,
            },
        ]
        sizes[str(n)] = {"phases": phases}
    return {
        "settings": asdict(dht.Settings(sizes=(16, 32, 64), datasets=(5,))),
        "build": {"image": None},
        "sizes": sizes,
    }


def test_the_fit_recovers_the_constants_and_the_report_sets_them_beside_the_research() -> None:
    summary = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    summary["fit"] = dht.fit(summary)
    assert summary["fit"]["maintenance"] == pytest.approx({"a": 3.0, "b": 20.0})
    assert summary["fit"]["per_key"] == pytest.approx({"c0": 1000.0, "c1": 5000.0})
    assert dht.predicted_rate(summary, 32, 5, 60) == pytest.approx(3 + 20 * 5 + 5 / 60 * (1000 + 5000 * 5))
    report = dht.markdown(summary)
    assert "maintenance = 3.0 + 20.0 log2 N B/s (research: 6.67 + 48.2 log2 N)" in report
    assert "| 32 | 103.0 | 248 | 26000 | 76044 | 5000 |" in report
    assert "| 10,000 | 417 | 30 min |" in report


def test_one_size_gives_no_fit() -> None:
    summary = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    summary["sizes"] = {"16": summary["sizes"]["16"]}
    summary["fit"] = dht.fit(summary)
    assert summary["fit"] == {"maintenance": None, "per_key": None}
    assert dht.predicted_rate(summary, 16, 5, 60) is None
    assert "Fewer than two sizes: no fit." in dht.markdown(summary)


def test_without_idle_phases_maintenance_is_reported_unmeasured() -> None:
    summary = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    for size in summary["sizes"].values():
        size["phases"] = [p for p in size["phases"] if p["phase"] != "idle"]
    summary["fit"] = dht.fit(summary)
    assert summary["fit"]["maintenance"] is None and summary["fit"]["per_key"]
    assert dht.predicted_rate(summary, 32, 5, 60) == pytest.approx(5 / 60 * (1000 + 5000 * 5))
    report = dht.markdown(summary)
    assert "| 32 | - | 248 | 26000 |" in report and "maintenance: not measured" in report


def test_an_upload_a_sweep_overlapped_is_left_out_of_the_fit_and_steady_phases_stand_in() -> None:
    summary = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    overlapped = next(p for p in summary["sizes"]["16"]["phases"] if p["phase"].startswith("upload"))
    overlapped["add_provider_per_key"], overlapped["first_bytes_per_key"] = 30.0, 99_999.0  # 15 replicas
    summary["fit"] = dht.fit(summary)
    # 16 keeps its steady estimate (2x the others' by construction): the fit moves, but not to 99,999
    assert summary["fit"]["per_key"]["c0"] + summary["fit"]["per_key"]["c1"] * 4 < 99_999 / 2
    assert dht._per_key(16, summary["sizes"]["16"]) == [2 * (1000.0 + 5000.0 * 4)]
    for size in summary["sizes"].values():  # an image under test has no steady phases
        size["phases"] = [p for p in size["phases"] if not p["phase"].startswith("steady")]
    assert "## Steady state" not in dht.markdown({**summary, "fit": dht.fit(summary)})


def test_the_churn_schedule_is_seeded_spares_the_bootstrap_node_and_never_repeats_a_node() -> None:
    settings = dht.Settings(churn_per_min=4, churn_s=300)
    schedule = dht.churn_schedule(settings, 16, random.Random(7))
    assert [at for at, _ in schedule] == [k * 15.0 for k in range(20)]
    nodes = [node for _, node in schedule]
    assert "d000" not in nodes and all(a != b for a, b in itertools.pairwise(nodes))
    assert dht.churn_schedule(settings, 16, random.Random(7)) == schedule, "the same seed, the same crashes"
    assert dht.Settings(churn_per_min=1, churn_s=30).problems() == [
        "--churn-duration: too short for one crash at --churn's rate"
    ]
    assert dht.Settings(churn_per_min=-1).problems() == ["--churn: at least 0 crashes per minute"]


def test_counts_a_crashed_node_had_are_carried_past_its_restart() -> None:
    before = {"a": {(dht.SENT, "findNode"): 100.0}}
    lost = {"a": {(dht.SENT, "findNode"): 130.0}}  # read just before the crash
    after_restart = {"a": {(dht.SENT, "findNode"): 20.0, (dht.SENT, "addProvider"): 5.0}}
    after = dht.add_counts(after_restart, lost)
    assert dht.delta(before, after, dht.SENT) == {"findNode": 50.0, "addProvider": 5.0}


def test_the_report_sets_a_crash_and_rejoin_beside_a_first_join() -> None:
    summary = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    summary["sizes"]["16"]["phases"].append(
        {"phase": "churn", "per_min": 2.0, "crashes": 6, "seconds": 185.0, "bytes_per_crash": 41000.0}
    )
    summary["fit"] = dht.fit(summary)
    report = dht.markdown(summary)
    assert "## Churn" in report and "| 16 | 2 | 6 | 185 | 41000 | 5333 |" in report


def test_a_written_topology_joins_every_node_through_d000_for_a_cluster(tmp_path) -> None:
    file = tmp_path / "dht-128.yaml"
    dht.write_topology(dht.Settings(interval_s=600), 128, BuildUnderTest(), file)
    model = loader.load(str(file))
    assert len(model.nodes) == 128 and model.peering == "none"
    assert sorted(model.edges()) == sorted((dht.node_name(i), "d000") for i in range(1, 128))
    assert model.nodes["d127"].flags == {"advertise-interval": "600s"}
    assert model.healthcheck_interval == HEALTHCHECK_INTERVAL_S, "a cluster probes as often as ever"
    assert dht.topology(dht.Settings(), 128, BuildUnderTest()).healthcheck_interval == HEALTHCHECK_RARELY_S


def test_runs_with_different_intervals_merge_into_one_report_with_t_per_row(tmp_path) -> None:
    first = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)  # T = 60 (the settings' default)
    second = _summary(a=3.0, b=20.0, c0=1000.0, c1=5000.0)
    second["settings"]["interval_s"] = 240
    for size in second["sizes"].values():
        size["phases"] = [p for p in size["phases"] if p["phase"].startswith("steady")]
    del second["sizes"]["64"]
    folders = []
    for name, summary in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(summary))
        folders.append(tmp_path / name)
    merged = json.loads((dht.merge_runs(folders, tmp_path / "merged") / "results.json").read_text())
    assert merged["settings"]["intervals_s"] == [60, 240] and merged["settings"]["sizes"] == [16, 32, 64]
    assert [p["interval_s"] for p in merged["sizes"]["16"]["phases"] if "interval_s" in p] == [60, 240]
    assert merged["fit"]["per_key"] == pytest.approx({"c0": 1000.0, "c1": 5000.0})
    report = (tmp_path / "merged" / "report.md").read_text()
    assert "T = 60, 240 s" in report and "| 16 | 5 | 240 |" in report and "| 16 | 5 | 60 |" in report
    with pytest.raises(TestbedError, match=r"no results\.json"):
        dht.merge_runs([tmp_path / "nothing"])


def test_every_node_is_read_and_the_readings_keep_their_node() -> None:
    nodes = {f"d{i:03d}": SimpleNamespace(metrics_url=f"http://10.0.0.{i}:8008/metrics") for i in range(5)}
    testbed = SimpleNamespace(plan=SimpleNamespace(nodes=nodes))
    readings = dht._read_every_node(testbed, lambda url: url.split("/")[2])  # type: ignore[arg-type]
    assert readings == {name: f"10.0.0.{i}:8008" for i, name in enumerate(nodes)}
