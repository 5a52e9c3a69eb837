"""Repro scenario files: every kind of mistake gets its precise error (file, key path, problem), and
a good scenario loads with its arguments normalised and its links, routers and seed applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.errors import ScenarioError, TopologyError
from harness.experiments.repro import scenario
from harness.topology.model import Link, Shaping

# nat-pair: codex nodes seed, alice (LAN home-a, port-restricted), bob (home-b, symmetric); a relay.
TOPOLOGY = "topology: nat-pair\n"
UPLOAD = "  - upload: {node: alice, size: 1MiB, as: data}\n"
DOWNLOAD = "  - download: {node: bob, dataset: data}\n"
STEPS = "steps:\n" + UPLOAD + DOWNLOAD
EXPECT = "expect:\n  - says: it fails\n    download_fails: {download: download-1}\n"
GOOD = TOPOLOGY + STEPS + EXPECT


def steps(*lines: str) -> str:
    """A scenario on nat-pair with these steps (after an upload of `data`) and the usual expectation."""
    return TOPOLOGY + "steps:\n" + UPLOAD + "".join(f"  - {line}\n" for line in lines) + EXPECT


def expect(*entries: str) -> str:
    """A scenario on nat-pair (an upload, then download-1) with these expectations."""
    return TOPOLOGY + STEPS + "expect:\n" + "".join(f"  - says: seen\n    {entry}\n" for entry in entries)


def inline(nodes: str) -> str:
    return (
        "topology:\n  nodes:\n"
        + nodes
        + "steps:\n  - wait: {seconds: 1}\n"
        + EXPECT.replace("download_fails: {download: download-1}", "reservation_kept: {node: a}")
    )


CASES = {
    # the file and its top level
    "yaml-syntax": ("steps: [\n", "<top level>", "invalid YAML at line 2"),
    "duplicate-key": (GOOD + "steps: []\n", "<top level>", "duplicate key 'steps'"),
    "not-a-mapping": ("- a\n- b\n", "<top level>", "must be a mapping, got list"),
    "unknown-top-key": (GOOD + "stepz: 3\n", "stepz", "unknown key (did you mean 'steps'?)"),
    "bad-name": ("name: Repro_1\n" + GOOD, "name", "name 'Repro_1' must match"),
    "field-not-a-list": ("field: issue 12\n" + GOOD, "field", "must be a list of upstream references"),
    "field-entry-not-a-string": ("field: [12]\n" + GOOD, "field[0]", "must be a non-empty string"),
    "seed-out-of-range": ("seed: -1\n" + GOOD, "seed", "must be a whole number from 0 to 4294967295"),
    "no-topology": (STEPS + EXPECT, "topology", "is required"),
    "no-steps": (TOPOLOGY + EXPECT, "steps", "is required"),
    "empty-steps": (TOPOLOGY + "steps: []\n" + EXPECT, "steps", "must be a non-empty list"),
    "no-expect": (TOPOLOGY + STEPS, "expect", "is required"),
    "empty-expect": (TOPOLOGY + STEPS + "expect: []\n", "expect", "must be a non-empty list"),
    # the topology: a built-in one's name, or inline
    "unknown-topology": (
        GOOD.replace("nat-pair", "nat-pairs"),
        "topology",
        "'nat-pairs' is not a built-in topology (did you mean 'nat-pair'?)",
    ),
    "topology-a-number": (GOOD.replace("nat-pair", "3"), "topology", "must be a built-in topology's name"),
    "inline-topology-bad-kind": (
        inline("    a: {kind: codx}\n"),
        "topology.nodes.a.kind",
        "must be one of codex, status, relay; got 'codx'",
    ),
    "inline-topology-unknown-key": (
        "topology: {nodez: {}}\n" + STEPS + EXPECT,
        "topology.nodez",
        "unknown key (did you mean 'nodes'?)",
    ),
    "inline-topology-relay-client": (
        inline(
            "    r: {kind: relay}\n    a: {kind: codex, image: 'codexstorage/nim-codex:0.2.5', relay: r}\n"
        ),
        "topology.nodes.a.relay",
        "reserving on a testbed relay is the reference node's client",
    ),
    # links and routers, with the topology's rules
    "link-out-of-range": ("links: {bob: {delay_ms: -5}}\n" + GOOD, "links.bob.delay_ms", "must be a number"),
    "link-key-typo": (
        "links: {bob: {dealy_ms: 5}}\n" + GOOD,
        "links.bob.dealy_ms",
        "did you mean 'delay_ms'",
    ),
    "link-direction": (
        "links: {bob: {up: {loss_pct: 200}}}\n" + GOOD,
        "links.bob.up.loss_pct",
        "must be a number from 0 to 100, got 200",
    ),
    "link-jitter-without-delay": (
        "links: {bob: {jitter_ms: 4}}\n" + GOOD,
        "links.bob.jitter_ms",
        "needs delay_ms",
    ),
    "link-unknown-node": (
        "links: {bobb: {delay_ms: 5}}\n" + GOOD,
        "links.bobb",
        "'bobb' is not a codex node of the topology (did you mean 'bob'?)",
    ),
    "links-not-a-mapping": ("links: [bob]\n" + GOOD, "links", "must be a mapping, got list"),
    "router-key-typo": (
        "routers: {home-a: {udp_timout: 30}}\n" + GOOD,
        "routers.home-a.udp_timout",
        "did you mean 'udp_timeout'",
    ),
    "router-bad-timeout": (
        "routers: {home-a: {udp_timeout: 0}}\n" + GOOD,
        "routers.home-a.udp_timeout",
        "must be a whole number of seconds from 1 to 86400; got 0",
    ),
    "router-hairpin": (
        "routers: {home-b: {hairpin: true}}\n" + GOOD,
        "routers.home-b.hairpin",
        "needs a profile that forwards to a LAN host, not symmetric",
    ),
    "router-the-wan": ("routers: {wan: {pcap: true}}\n" + GOOD, "routers.wan", "'wan' is not a LAN"),
    "router-unknown-lan": (
        "routers: {hom-a: {pcap: true}}\n" + GOOD,
        "routers.hom-a",
        "(did you mean 'home-a'?)",
    ),
    # a step's shape
    "step-not-a-mapping": (steps("upload"), "steps[1]", "must be a mapping, got str"),
    "unknown-action": (steps("uplaod: {}"), "steps[1].uplaod", "unknown key (did you mean 'upload'?)"),
    "no-action": (steps("at: 3"), "steps[1]", "names no action (one of upload, download,"),
    "two-actions": (steps("{heal: {}, wait: {seconds: 3}}"), "steps[1]", "names 2 actions (heal, wait)"),
    "at-and-after": (steps("{at: 3, after: 2, heal: {}}"), "steps[1]", "give at (since the start) or after"),
    "negative-at": (steps("{at: -1, heal: {}}"), "steps[1].at", "from 0 to 86400; got -1"),
    "bad-step-name": (steps("{name: Reboot, heal: {}}"), "steps[1].name", "name 'Reboot' must match"),
    "duplicate-step-name": (
        steps("{name: flush, nat_flush: {router: home-a}}", "{name: flush, heal: {}}"),
        "steps[2].name",
        "'flush' is the name of steps[1] too",
    ),
    "missing-argument": (steps("download: {node: bob}"), "steps[1].download.dataset", "is required"),
    "unknown-argument": (
        steps("download: {node: bob, dataset: data, timeout: 9}"),
        "steps[1].download.timeout",
        "unknown key (did you mean 'timeout_s'?)",
    ),
    "arguments-not-a-mapping": (steps("wait: 5"), "steps[1].wait", "must be a mapping, got int"),
    "heal-with-arguments": (steps("heal: {all: true}"), "steps[1].heal", "takes no arguments"),
    # names the topology must have
    "unknown-node": (
        steps("download: {node: bobb, dataset: data}"),
        "steps[1].download.node",
        "'bobb' is not a codex node of the topology (did you mean 'bob'?)",
    ),
    "a-relay-is-no-codex-node": (
        steps("link_flap: {node: relay, down_s: 3}"),
        "steps[1].link_flap.node",
        "'relay' is not a codex node of the topology",
    ),
    "unknown-target": (
        steps("kill: {target: relai}"),
        "steps[1].kill.target",
        "'relai' is not a codex node or relay of the topology (did you mean 'relay'?)",
    ),
    "unknown-router": (
        steps("router_reboot: {router: hom-a, down_s: 5}"),
        "steps[1].router_reboot.router",
        "(did you mean 'home-a'?)",
    ),
    "router-by-its-service-name": (
        steps("nat_flush: {router: router-home-a}"),
        "steps[1].nat_flush.router",
        "is not a LAN of the topology: a router goes by its LAN's name",
    ),
    "connect-to-itself": (
        steps("connect: {node: bob, peer: bob}"),
        "steps[1].connect.peer",
        "is the node itself",
    ),
    # names the timeline must have introduced before
    "unknown-dataset": (
        steps("download: {node: bob, dataset: dta}"),
        "steps[1].download.dataset",
        "'dta' is not a dataset an earlier step uploads (did you mean 'data'?)",
    ),
    "dataset-uploaded-later": (
        TOPOLOGY + "steps:\n" + DOWNLOAD + UPLOAD + EXPECT.replace("download-1", "download-0"),
        "steps[0].download.dataset",
        "dataset 'data' is uploaded only later, by steps[1]",
    ),
    "duplicate-dataset": (
        steps("upload: {node: bob, size: 10, as: data}"),
        "steps[1].upload.as",
        "dataset 'data' is uploaded by steps[0] already",
    ),
    "duplicate-download-id": (
        steps(
            "download: {node: bob, dataset: data, id: fetch}",
            "download: {node: seed, dataset: data, id: fetch}",
        ),
        "steps[2].download.id",
        "download id 'fetch' is steps[1]'s too",
    ),
    "await-a-foreground-download": (
        steps("{name: fetch, download: {node: bob, dataset: data}}", "await: {download: fetch}"),
        "steps[2].await.download",
        "download 'fetch' (steps[1]) is not in the background",
    ),
    "await-unknown": (
        steps(
            "{name: fetch, download: {node: bob, dataset: data, background: true}}", "await: {download: fetc}"
        ),
        "steps[2].await.download",
        "(did you mean 'fetch'?)",
    ),
    "await-a-later-download": (
        steps(
            "await: {download: fetch}",
            "{name: fetch, download: {node: bob, dataset: data, background: true}}",
        ),
        "steps[1].await.download",
        "download 'fetch' starts only later, at steps[2]",
    ),
    # values
    "size-not-a-size": (GOOD.replace("1MiB", "lots"), "steps[0].upload.size", "'lots' is not a byte size"),
    "size-zero": (GOOD.replace("1MiB", "0"), "steps[0].upload.size", "out of range: 1 byte to 1 TiB"),
    "size-too-large": (GOOD.replace("1MiB", "2TiB"), "steps[0].upload.size", "out of range: 1 byte to 1 TiB"),
    "background-not-a-flag": (
        steps("download: {node: bob, dataset: data, background: maybe}"),
        "steps[1].download.background",
        "must be true or false",
    ),
    "timeout-zero": (
        steps("download: {node: bob, dataset: data, timeout_s: 0}"),
        "steps[1].download.timeout_s",
        "must be a number of seconds from 1 to 3600; got 0",
    ),
    "wait-too-long": (steps("wait: {seconds: 7200}"), "steps[1].wait.seconds", "from 1 to 3600; got 7200"),
    "duration-zero": (
        steps("router_reboot: {router: home-a, down_s: 0}"),
        "steps[1].router_reboot.down_s",
        "more than 0 and at most 3600; got 0",
    ),
    "duration-a-string": (
        steps("pause: {target: bob, for_s: '10'}"),
        "steps[1].pause.for_s",
        "must be a number of seconds more than 0",
    ),
    "mapping-timeout-none": (
        steps("mapping_timeout: {router: home-a}"),
        "steps[1].mapping_timeout",
        "give tcp_s, udp_s or both",
    ),
    "mapping-timeout-a-fraction": (
        steps("mapping_timeout: {router: home-a, tcp_s: 2.5}"),
        "steps[1].mapping_timeout.tcp_s",
        "must be a whole number of seconds from 1 to 86400; got 2.5",
    ),
    "address-change-unknown-router": (
        steps("address_change: {router: home-c}"),
        "steps[1].address_change.router",
        "a LAN of the topology",
    ),
    "partition-one-side": (
        steps("partition: {between: [[alice, bob]]}"),
        "steps[1].partition.between",
        "must be two lists of codex nodes or relays",
    ),
    "partition-empty-side": (
        steps("partition: {between: [[alice], []]}"),
        "steps[1].partition.between[1]",
        "must be a non-empty list",
    ),
    "partition-overlap": (
        steps("partition: {between: [[alice, relay], [bob, alice]]}"),
        "steps[1].partition.between[1][1]",
        "names 'alice' again (as steps[1].partition.between[0][0])",
    ),
    "partition-unknown": (
        steps("partition: {between: [[alice], [bobb]]}"),
        "steps[1].partition.between[1][0]",
        "(did you mean 'bob'?)",
    ),
    # expectations
    "expectation-unknown-kind": (
        expect("download_fail: {download: download-1}"),
        "expect[0].download_fail",
        "unknown key (did you mean 'download_fails'?)",
    ),
    "expectation-without-says": (
        TOPOLOGY + STEPS + "expect:\n  - download_fails: {download: download-1}\n",
        "expect[0].says",
        "is required",
    ),
    "expectation-empty-says": (
        TOPOLOGY + STEPS + "expect:\n  - {says: '', reservation_kept: {node: bob}}\n",
        "expect[0].says",
        "must be a non-empty string",
    ),
    "expectation-no-kind": (TOPOLOGY + STEPS + "expect:\n  - says: x\n", "expect[0]", "names no expectation"),
    "expectation-two-kinds": (
        expect("reservation_kept: {node: bob}\n    reservation_lost: {node: bob}"),
        "expect[0]",
        "names 2 expectations (reservation_kept, reservation_lost)",
    ),
    "expectation-unknown-download": (
        expect("download_completes: {download: download-2}"),
        "expect[0].download_completes.download",
        "'download-2' is not a download of the steps (did you mean 'download-1'?)",
    ),
    "expectation-unknown-step": (
        expect("reservation_lost: {node: bob, after: reboot}"),
        "expect[0].reservation_lost.after",
        "'reboot' is not the name of a step",
    ),
    "expectation-same-node": (
        expect("stays_relayed: {node: bob, peer: bob}"),
        "expect[0].stays_relayed.peer",
        "is the node itself",
    ),
    "expectation-bad-within": (
        expect("goes_direct: {node: alice, peer: bob, within_s: -3}"),
        "expect[0].goes_direct.within_s",
        "more than 0 and at most 3600; got -3",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_scenario_is_named_precisely(tmp_path: Path, case: str) -> None:
    text, key_path, problem = CASES[case]
    file = tmp_path / f"{case}.yaml"
    file.write_text(text)

    with pytest.raises(ScenarioError) as caught:
        scenario.load(file)

    message = str(caught.value)
    assert message.startswith(f"{file}: {key_path}: "), message
    assert problem in message, message


def test_a_scenario_error_is_a_topology_error() -> None:
    assert issubclass(ScenarioError, TopologyError)


def test_an_error_in_a_built_in_topology_names_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.yaml").write_text("nodes: {}\n")
    monkeypatch.setattr(scenario, "TOPOLOGIES_DIR", tmp_path)
    file = tmp_path / "s.yaml"
    file.write_text(GOOD.replace("nat-pair", "broken"))

    with pytest.raises(TopologyError, match=r"broken\.yaml: nodes: declares no nodes"):
        scenario.load(file)


def test_a_bare_name_is_a_file_of_the_scenarios_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenario, "SCENARIOS_DIR", tmp_path)
    (tmp_path / "relay-limit.yaml").write_text(GOOD)
    (tmp_path / "flush.yaml").write_text(GOOD)

    assert scenario.available() == ["flush", "relay-limit"]
    assert scenario.load("relay-limit").source == tmp_path / "relay-limit.yaml"
    with pytest.raises(
        ScenarioError, match=r"absent\.yaml: <top level>: no such scenario file \(scenarios: flush, relay-"
    ):
        scenario.load("absent")


FULL = """\
description: >
  A download between two NATed nodes dies
  at the relay's circuit limit.
field: ["logos-storage-nim#1234", "forum: slow downloads"]
topology: nat-relay
seed: 7
links:
  down-d: {delay_ms: 40, loss_pct: 3, up: {rate: 8mbit}}
routers:
  lan-c: {udp_timeout: 30, pcap: true}
steps:
  - upload: {node: up-c, size: 30MiB, as: archive}
  - at: 5
    name: fetch
    download: {node: down-d, dataset: archive, background: true, timeout_s: 180}
  - download: {node: up-e, dataset: archive}
  - after: 2
    router_reboot: {router: lan-c, down_s: 10}
  - {name: cut, partition: {between: [[up-c, relay-default], [down-d]]}}
  - heal:
  - conntrack_full: {router: lan-d}
  - await: {download: fetch}
expect:
  - says: >
      the download fails at the relay limit
      within 120 s
    download_fails: {download: fetch, within_s: 120}
  - says: the downloader loses its reservation after the partition
    reservation_lost: {node: down-d, after: cut}
  - says: up-e and down-f go direct
    goes_direct: {node: up-e, peer: down-f}
"""


def test_a_good_scenario_loads_normalised(tmp_path: Path) -> None:
    file = tmp_path / "relay-limit.yaml"
    file.write_text(FULL)

    loaded = scenario.load(file)

    assert (loaded.name, loaded.source, loaded.seed) == ("relay-limit", file, 7)
    assert loaded.description == "A download between two NATed nodes dies at the relay's circuit limit.\n"
    assert loaded.field == ("logos-storage-nim#1234", "forum: slow downloads")
    assert [(s.index, s.name, s.action, s.at, s.after) for s in loaded.steps] == [
        (0, "upload-0", "upload", None, None),
        (1, "fetch", "download", 5.0, None),
        (2, "download-2", "download", None, None),
        (3, "router-reboot-3", "router_reboot", None, 2.0),
        (4, "cut", "partition", None, None),
        (5, "heal-5", "heal", None, None),
        (6, "conntrack-full-6", "conntrack_full", None, None),
        (7, "await-7", "await", None, None),
    ]
    args = [s.args for s in loaded.steps]
    assert args[0] == {"node": "up-c", "size": 30 * 2**20, "as": "archive"}
    assert args[1] == {
        "node": "down-d",
        "dataset": "archive",
        "id": "fetch",
        "background": True,
        "timeout_s": 180,
    }
    assert args[2] == {
        "node": "up-e",
        "dataset": "archive",
        "id": "download-2",
        "background": False,
        "timeout_s": 300,
    }
    assert args[4] == {"between": [["up-c", "relay-default"], ["down-d"]]}
    assert args[5] == {}
    assert args[6] == {"router": "lan-d", "for_s": None}
    assert [(e.index, e.says, e.kind, e.args) for e in loaded.expect] == [
        (
            0,
            "the download fails at the relay limit within 120 s",
            "download_fails",
            {"download": "fetch", "within_s": 120},
        ),
        (
            1,
            "the downloader loses its reservation after the partition",
            "reservation_lost",
            {"node": "down-d", "within_s": None, "after": "cut"},
        ),
        (2, "up-e and down-f go direct", "goes_direct", {"node": "up-e", "peer": "down-f", "within_s": None}),
    ]


def test_a_scenario_s_links_routers_and_seed_apply_to_its_topology(tmp_path: Path) -> None:
    file = tmp_path / "relay-limit.yaml"
    file.write_text(FULL)

    topology = scenario.load(file).topology

    assert topology.name == "nat-relay"
    assert topology.seed == 7
    assert topology.nodes["down-d"].link == Link(
        up=Shaping(rate="8mbit", delay_ms=40, loss_pct=3), down=Shaping(delay_ms=40, loss_pct=3)
    )
    assert topology.nodes["up-c"].link is None
    lan_c = topology.networks["lan-c"]
    assert (lan_c.nat, lan_c.udp_timeout, lan_c.pcap, lan_c.hairpin) == ("port-restricted", 30, True, False)
    assert topology.networks["lan-d"].udp_timeout is None
    assert "linkstage" in topology.images()  # the scenario's conditions run in a link stage


def test_an_inline_topology_is_the_scenario_file_s(tmp_path: Path) -> None:
    file = tmp_path / "pair.yaml"
    file.write_text(
        "topology:\n"
        "  seed: 3\n"
        "  networks: {wan: {kind: wan}, home: {kind: lan, nat: full-cone}}\n"
        "  nodes:\n"
        "    a: {kind: codex}\n"
        "    b: {kind: codex, network: home, link: {delay_ms: 5}}\n"
        "routers: {home: {hairpin: true}}\n"
        "links: {b: {loss_pct: 1}}\n"
        "steps:\n  - connect: {node: b, peer: a}\n"
        "  - wait_direct: {node: b, peer: a}\n"
        "expect:\n  - says: they stay relayed\n    stays_relayed: {node: a, peer: b}\n"
    )

    loaded = scenario.load(file)

    assert (loaded.topology.name, loaded.topology.source) == ("pair", file)
    assert loaded.topology.seed == 0  # the scenario's seed (default 0), not the inline topology's
    assert loaded.topology.nodes["b"].link == Link.both(loss_pct=1)  # replaced, not merged
    assert loaded.topology.networks["home"].hairpin is True
    assert loaded.steps[1].args == {"node": "b", "peer": "a", "timeout_s": scenario.WAIT_DIRECT_TIMEOUT_S}


def test_every_action_and_expectation_kind_has_arguments_and_loads(tmp_path: Path) -> None:
    """One step of each action and one expectation of each kind: the tables and the loader agree."""
    file = tmp_path / "all.yaml"
    file.write_text(
        TOPOLOGY
        + "steps:\n"
        + UPLOAD
        + "  - {name: fetch, download: {node: bob, dataset: data, background: true}}\n"
        + "  - await: {download: fetch}\n"
        + "  - connect: {node: alice, peer: bob}\n"
        + "  - wait_direct: {node: alice, peer: bob, timeout_s: 30}\n"
        + "  - wait: {seconds: 2.5}\n"
        + "  - partition: {between: [[alice], [relay]]}\n"
        + "  - heal: {}\n"
        + "  - link_flap: {node: bob, down_s: 3}\n"
        + "  - nat_flush: {router: home-a}\n"
        + "  - router_reboot: {router: home-b, down_s: 10}\n"
        + "  - nat_rebind: {router: home-b}\n"
        + "  - conntrack_full: {router: home-a, for_s: 20}\n"
        + "  - mapping_timeout: {router: home-a, tcp_s: 30, udp_s: 20}\n"
        + "  - address_change: {router: home-b}\n"
        + "  - kill: {target: relay}\n"
        + "  - pause: {target: seed, for_s: 4}\n"
        + "  - restart: {target: relay}\n"
        + "  - capture: {router: home-a, seconds: 30}\n"
        + "expect:\n"
        + "".join(
            f"  - says: {kind}\n    {kind}: {args}\n"
            for kind, args in {
                "download_fails": "{download: fetch, within_s: 60}",
                "download_completes": "{download: fetch}",
                "download_slow": "{download: fetch, slower_than_s: 120}",
                "stays_relayed": "{node: alice, peer: bob}",
                "goes_direct": "{node: alice, peer: bob, within_s: 30}",
                "reservation_lost": "{node: bob, within_s: 20, after: kill-15}",
                "reservation_kept": "{node: alice}",
            }.items()
        )
    )

    loaded = scenario.load(file)

    assert [s.action for s in loaded.steps] == ["upload", "download", "await", *list(scenario.ACTIONS)[3:]]
    assert [e.kind for e in loaded.expect] == list(scenario.EXPECTATIONS)
    assert all(set(s.args) == set(scenario.ACTIONS[s.action]) for s in loaded.steps)
    assert all(set(e.args) == set(scenario.EXPECTATIONS[e.kind]) for e in loaded.expect)


def test_another_seed_is_the_topology_s_too(tmp_path: Path) -> None:
    file = tmp_path / "relay-limit.yaml"
    file.write_text(FULL)

    reseeded = scenario.load(file).with_seed(42)

    assert (reseeded.seed, reseeded.topology.seed) == (42, 42)
    with pytest.raises(ValueError, match="a seed is a whole number from 0 to 4294967295"):
        reseeded.with_seed(-1)


def test_the_cli_names_a_broken_scenario_and_creates_nothing(
    tmp_path: Path, no_engine: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(FULL.replace("size: 30MiB", "size: lots"))

    code = cli.main(["repro", str(file)])

    assert code == 1
    error = capsys.readouterr().err
    assert f"testbed repro: {file}: steps[0].upload.size:" in error
    assert no_engine == [], "nothing may touch an engine before the scenario is whole"


def test_every_scenario_of_the_gallery_loads_and_says_where_it_comes_from() -> None:
    names = scenario.available()
    assert len(names) >= 6
    for name in names:
        loaded = scenario.load(name)
        assert loaded.description.strip() and loaded.expect, name
