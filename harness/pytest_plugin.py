"""pytest plugin: a ready Testbed per module (or session), markers by area, evidence on failure.

A test module names its topology with `TOPOLOGY = "basic"` (default "basic") and asks for the
`testbed` fixture. Project names carry the xdist worker id, so `pytest -n 4` runs testbeds side by
side. When a test fails, container logs, rendered compose, plan and readiness report are written
under `artifacts/<project>/<test>/` and attached to Allure.

`--codex-image IMAGE --impl codex|logos-storage` runs every suite against that build (make passes
CODEX_IMAGE and CODEX_IMPL here). A test marked `needs("capability", ...)` is skipped, with the
capability and the node that lacks it as the reason, when its testbed's nodes cannot serve it;
`-ra` (the project's default) lists every such skip in the summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import selection
from harness.paths import artifacts_dir
from harness.testbed import Testbed
from harness.topology import loader
from harness.topology.plan import capabilities_of

DEFAULT_TOPOLOGY = "basic"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testbed")
    group.addoption(
        "--testbed-deadline", type=float, default=180.0, help="readiness deadline per testbed (s)"
    )
    for flags, options in selection.OPTIONS:
        group.addoption(*flags, **options)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): skipped unless every node of the testbed has them (harness.impl)"
    )


def build_under_test(config: pytest.Config) -> selection.BuildUnderTest:
    return selection.BuildUnderTest(
        image=config.getoption("--codex-image") or None,
        impl=config.getoption("--impl") or None,
        strict=config.getoption("--strict-reference"),
    )


def lacking_capability(item: pytest.Item) -> str | None:
    """Why a test marked `needs(...)` cannot run on its testbed's nodes, decided from the
    topology and the build under test before anything is brought up; None when it can."""
    needs = [capability for marker in item.iter_markers("needs") for capability in marker.args]
    fixtures = set(getattr(item, "fixturenames", ()))
    if not needs or not fixtures & {"testbed", "session_testbed"}:
        return None
    module_topology = getattr(item.module, "TOPOLOGY", DEFAULT_TOPOLOGY)
    topology = module_topology if "testbed" in fixtures else DEFAULT_TOPOLOGY
    model = build_under_test(item.config).apply(loader.load(topology))
    for node in model.nodes.values():
        for capability in needs:
            if capability not in capabilities_of(node):
                return (
                    f"needs {capability}, which {node.name} ({node.image or 'a strict reference node'}) lacks"
                )
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if reason := lacking_capability(item):
        pytest.skip(reason)


def _bring_up(request: pytest.FixtureRequest, topology: str) -> Iterator[Testbed]:
    deadline = request.config.getoption("--testbed-deadline")
    testbed = Testbed.up(
        topology, deadline_s=deadline, log=lambda _line: None, build=build_under_test(request.config)
    )
    try:
        yield testbed
    finally:
        testbed.down()


@pytest.fixture(scope="module")
def testbed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A ready testbed of the module's TOPOLOGY, shared by the module's tests, downed after it."""
    yield from _bring_up(request, getattr(request.module, "TOPOLOGY", DEFAULT_TOPOLOGY))


@pytest.fixture(scope="session")
def session_testbed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """One basic testbed for a whole session (per xdist worker)."""
    yield from _bring_up(request, DEFAULT_TOPOLOGY)


def _attach_to_allure(folder: Path) -> None:
    try:
        import allure
    except ImportError:
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = allure.attachment_type.JSON if path.suffix == ".json" else allure.attachment_type.TEXT
        allure.attach.file(str(path), name=str(path.relative_to(folder)), attachment_type=kind)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for name in ("testbed", "session_testbed"):
            testbed = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(testbed, Testbed):
                test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
                folder = testbed.save_artifacts(artifacts_dir(testbed.plan.project) / test_name)
                _attach_to_allure(folder)
                report.sections.append(("testbed artifacts", str(folder)))
    return report
