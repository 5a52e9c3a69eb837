"""The single node container (harness/single.py), without docker: the config it gets per
profile is the one a testbed's node gets, and what else it is created with."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest
from testcontainers.core.config import testcontainers_config

from harness import cli, imagerefs, single
from harness.engine import images
from harness.errors import EngineError, TopologyError
from harness.experiments import contract
from harness.impl import CAP_REFERENCE_EXTRAS, CODEX, LOGOS_STORAGE, PROFILES
from harness.labels import LABEL_NODE, LABEL_PROJECT, LABEL_ROLE, check_project
from harness.selection import BuildUnderTest
from harness.topology import loader
from harness.topology.plan import make_plan

UPSTREAM = "logosstorage/logos-storage-nim:0.4.5"
BUILDS = [
    BuildUnderTest(),
    BuildUnderTest(impl="codex", strict=True),
    BuildUnderTest(impl="logos-storage"),
    BuildUnderTest(impl="logos-storage", strict=True),
    BuildUnderTest(image=UPSTREAM, impl="logos-storage"),
    BuildUnderTest(image="codexstorage/nim-codex:0.2.5", impl="codex", strict=True),
]


def _id(build: BuildUnderTest) -> str:
    return f"{build.impl}-{'strict' if build.strict else 'extras'}-{build.image or 'ref'}"


def planned_node(build: BuildUnderTest):
    """The same node as a testbed of the contract topology plans it."""
    model = build.apply(loader.load(single.TOPOLOGY))
    refs = images.image_refs(model.images())
    return make_plan(model, [ipaddress.IPv4Network("11.200.9.0/24")], refs, project="p").nodes["codex-1"]


@pytest.mark.parametrize("build", BUILDS, ids=_id)
def test_the_container_gets_a_testbed_nodes_config_announcing_loopback(build: BuildUnderTest) -> None:
    spec = single.plan_single(build)
    node = planned_node(build)
    nat = spec.profile.env("nat")
    assert spec.env[nat] == "extip:127.0.0.1"
    assert {**spec.env, nat: node.env[nat]} == node.env  # everything else: key for key, in order
    assert list(spec.env) == list(node.env)
    assert (spec.image, spec.impl, spec.capabilities) == (node.image, node.impl, node.capabilities)
    assert spec.api_port == node.api_port == 8080


@pytest.mark.parametrize("build", BUILDS, ids=_id)
def test_every_variable_is_spelled_as_the_profile_spells_it(build: BuildUnderTest) -> None:
    spec = single.plan_single(build)
    profile = PROFILES[build.impl or "codex"]
    other = LOGOS_STORAGE if profile is CODEX else CODEX
    assert all(key.startswith(profile.env_prefix) for key in spec.env)
    assert not any(key.startswith(other.env_prefix) for key in spec.env)
    env = {key.removeprefix(profile.env_prefix): value for key, value in spec.env.items()}
    # REST on every interface of the container (a Logos node serves none unless bound), on 8080
    assert (env["API_BINDADDR"], env["API_PORT"], env["DATA_DIR"]) == ("0.0.0.0", "8080", "/datadir")
    if profile is LOGOS_STORAGE:
        assert (env["LISTEN_IP"], env["LISTEN_PORT"]) == ("0.0.0.0", "8070")
    else:
        assert (env["LISTEN_ADDRS"], env["DISC_PORT"]) == ("/ip4/0.0.0.0/tcp/8070", "8090")
    assert "NETWORK" not in env  # it would make a Logos image download a bootstrap list


def test_strict_is_the_reference_nodes_flag_and_only_on_request() -> None:
    strict = single.plan_single(BuildUnderTest(impl="logos-storage", strict=True))
    assert strict.env["STORAGE_STRICT"] == "true" and strict.reference
    assert CAP_REFERENCE_EXTRAS not in strict.capabilities
    extras = single.plan_single(BuildUnderTest(impl="codex"))
    assert "CODEX_STRICT" not in extras.env and CAP_REFERENCE_EXTRAS in extras.capabilities
    upstream = single.plan_single(BuildUnderTest(image=UPSTREAM, impl="logos-storage", strict=True))
    assert "STORAGE_STRICT" not in upstream.env and not upstream.reference  # not an upstream flag
    assert upstream.image == UPSTREAM and upstream.capabilities == tuple(sorted(LOGOS_STORAGE.capabilities))


def test_the_reference_image_is_this_namespaces_codex_ref() -> None:
    spec = single.plan_single(BuildUnderTest(impl="logos-storage"))
    assert spec.image == images.image_refs({"codex-ref"})["codex-ref"]
    assert spec.image.startswith(f"{imagerefs.namespace()}/codex-ref:")


def test_it_is_labelled_as_a_project_of_its_own_that_testbed_clean_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    first, second = single.plan_single(), single.plan_single()
    assert first.project != second.project
    assert first.project.startswith("tb-single-gw3-") and check_project(first.project)
    assert first.labels[LABEL_PROJECT] == first.project
    assert (first.labels[LABEL_ROLE], first.labels[LABEL_NODE]) == ("codex", "codex-1")
    assert first.container_name == f"{first.project}-codex-1"
    assert single.plan_single(project="tb-mine").labels[LABEL_PROJECT] == "tb-mine"


def test_the_node_gets_a_network_of_its_own_and_no_privileges() -> None:
    spec = single.plan_single(BuildUnderTest(impl="logos-storage", strict=True))
    assert spec.network == f"{spec.project}_net"  # created internal, removed with the container
    assert spec.kwargs == {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
    }


def test_ryuk_is_off_before_any_container_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(single.RYUK_DISABLED, "false")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", False)
    monkeypatch.setattr(single, "engine_answers", lambda: False)  # stop right after
    spec = single.plan_single()
    with pytest.raises(EngineError, match="no Docker engine answers"), single.single_node(spec):
        pass
    assert testcontainers_config.ryuk_disabled is True
    assert os.environ[single.RYUK_DISABLED] == "true"


def test_a_topology_of_more_than_one_node_is_refused() -> None:
    with pytest.raises(TopologyError, match=r"basic\.yaml: nodes: a single container runs exactly one"):
        single.plan_single(topology="basic")


def test_the_cli_refuses_mixed_targets_before_touching_anything(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["contract", "--node", "codex-2"]) == 2
    assert "--node names a node of a testbed" in capsys.readouterr().err
    assert cli.main(["contract", "--project", "tb-x", "--impl", "codex"]) == 2
    assert "runs on the testbed's own nodes" in capsys.readouterr().err


def test_with_project_the_cases_run_on_a_running_testbeds_node(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plan = make_plan(
        BuildUnderTest(impl="logos-storage", strict=True).apply(loader.load("contract")),
        [ipaddress.IPv4Network("11.200.9.0/24")],
        {"codex-ref": "testbed/codex-ref:x"},
        project="tb-contract-abc123",
    )
    (tmp_path / "plan.json").write_text(plan.to_json())
    monkeypatch.setattr(cli, "generated_dir", lambda project: tmp_path)
    monkeypatch.setattr(cli, "artifacts_dir", lambda project: tmp_path / "artifacts")
    seen = []

    def run(client, era, extras):
        seen.append((client.base_url, era, extras))
        return [contract.Result("a case", "200", "200", True, "upstream")]

    monkeypatch.setattr(contract, "run", run)
    assert cli.main(["contract", "--project", "tb-contract-abc123"]) == 0
    assert seen == [("http://11.200.9.10:8080/api/storage/v1", "logos-storage", False)]
    assert "1 of 1 cases as upstream" in capsys.readouterr().out
    report = json.loads(next((tmp_path / "artifacts").glob("logos-storage-*/contract.json")).read_text())
    assert report["target"] == "tb-contract-abc123/codex-1" and report["image"] == "testbed/codex-ref:x"
    assert cli.main(["contract", "--project", "tb-contract-abc123", "--node", "codex-9"]) == 1
    assert "has no storage node 'codex-9'" in capsys.readouterr().err
