"""Teardown reaches exactly its own project: names are checked, rules and folders match exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import cli, paths
from harness.labels import ProjectNameError, check_project, find_network, project_filter
from harness.net import hostfw

REFUSED = ["", "..", "../victim", "a/b", "/", " tb", "tb ", "tb\n", "TB", "-tb", "_tb", "tb\x00", "x" * 64]


@pytest.mark.parametrize("name", ["tb-basic-1a2b3c", "rel-iso", "a", "0", "tb_x", "x" * 63])
def test_valid_project_names_pass(name: str) -> None:
    assert check_project(name) == name


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_could_widen_or_escape_are_refused(name: str) -> None:
    with pytest.raises(ProjectNameError, match="is not a project name"):
        check_project(name)


def test_a_refused_name_is_echoed_bounded() -> None:
    with pytest.raises(ProjectNameError) as caught:
        check_project("../" * 50_000)
    assert len(str(caught.value)) < 300 and "150000 characters" in str(caught.value)


def test_an_empty_name_is_not_every_project() -> None:
    assert project_filter(None) == {"label": "testbed.project"}
    assert project_filter("tb") == {"label": "testbed.project=tb"}
    with pytest.raises(ProjectNameError):
        project_filter("")


def test_a_projects_network_is_found_by_both_compose_labels() -> None:
    asked: list[dict] = []

    def networks(filters: dict) -> list[SimpleNamespace]:
        asked.append(filters)
        return [SimpleNamespace(name="tb-basic-1a2b3c_wan")] if len(asked) == 1 else []

    client = SimpleNamespace(networks=SimpleNamespace(list=networks))
    assert find_network(client, "tb-basic-1a2b3c", "wan") == "tb-basic-1a2b3c_wan"
    assert asked[0] == {
        "label": ["com.docker.compose.project=tb-basic-1a2b3c", "com.docker.compose.network=wan"]
    }
    assert find_network(client, "tb-basic-1a2b3c", "lan-a") is None
    with pytest.raises(ProjectNameError):
        find_network(client, "", "wan")


@pytest.mark.parametrize("name", ["..", "../victim", ""])
def test_project_folders_stay_inside_their_root(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TESTBED_GENERATED_DIR", str(tmp_path))
    with pytest.raises(ProjectNameError):
        paths.generated_dir(name)
    assert paths.generated_dir("tb-x").parent == tmp_path


@pytest.mark.parametrize(
    "argv",
    [["clean", "--project", ""], ["clean", "--project", "../victim"], ["down", ""], ["down", ".."]],
)
def test_the_cli_refuses_bad_project_names_before_touching_anything(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "is not a project name" in capsys.readouterr().err


# What `iptables -S DOCKER-USER` prints with the guards of three testbeds and one foreign rule.
LISTING = """-N DOCKER-USER
-A DOCKER-USER -i tb-a1 ! -o tb-a1 -m comment --comment "testbed:rel-iso" -j DROP
-A DOCKER-USER -i tb-a2 ! -o tb-a2 -m comment --comment "testbed:rel-iso" -j DROP
-A DOCKER-USER -i tb-b1 ! -o tb-b1 -m comment --comment "testbed:rel-is" -j DROP
-A DOCKER-USER -i tb-c1 ! -o tb-c1 -m comment --comment "testbed:tb-basic-1a2b3c" -j DROP
-A DOCKER-USER -i eth9 -m comment --comment "someone else: testbed:rel-iso" -j ACCEPT
-A DOCKER-USER -j RETURN
"""


@pytest.fixture
def fake_iptables(monkeypatch) -> list[list[str]]:
    """iptables answering LISTING to -S and recording every -D."""
    deleted: list[list[str]] = []

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        if args[0] == "-D":
            deleted.append(list(args[2:]))
        return subprocess.CompletedProcess(args, 0, LISTING if args[0] == "-S" else "", "")

    monkeypatch.setattr(hostfw.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(hostfw, "_iptables", run)
    return deleted


def test_a_project_prefix_matches_no_other_projects_guard(fake_iptables) -> None:
    assert hostfw.release("rel-is") == 1
    assert fake_iptables == [
        ["-i", "tb-b1", "!", "-o", "tb-b1", "-m", "comment", "--comment", "testbed:rel-is", "-j", "DROP"]
    ]
    assert hostfw.rules("rel") == [] and hostfw.rules("tb") == []


def test_a_projects_guards_are_found_with_their_comment_unquoted(fake_iptables) -> None:
    guards = hostfw.rules("rel-iso")
    assert [spec[1] for spec in guards] == ["tb-a1", "tb-a2"]
    assert all(hostfw.rule_comment(spec) == "testbed:rel-iso" for spec in guards)


def test_every_testbeds_guards_but_no_foreign_rule(fake_iptables) -> None:
    comments = [hostfw.rule_comment(spec) for spec in hostfw.rules(None)]
    assert comments == ["testbed:rel-iso", "testbed:rel-iso", "testbed:rel-is", "testbed:tb-basic-1a2b3c"]


class _StaleNetwork:
    """A network whose removal the engine refuses for an endpoint of a container that is gone."""

    name = "tb-x_wan"

    def __init__(self) -> None:
        self.attrs: dict = {"Containers": {}}

    def reload(self) -> None:
        pass

    def remove(self) -> None:
        from docker.errors import APIError

        raise APIError(
            "409", explanation="error while removing network: network tb-x_wan has active endpoints"
        )


def test_a_stale_endpoint_is_reported_with_what_frees_it() -> None:
    from docker.errors import APIError

    from harness import sweep

    with pytest.raises(APIError) as raised:
        sweep._remove_network(_StaleNetwork())
    assert "active endpoints" in raised.value.explanation
    assert "restart the engine" in raised.value.explanation
