"""The REST contract of the node's implementation, case by case (harness/experiments/contract.py): every
answer as upstream gives it, from a single container of the build (harness/single.py), as
`testbed contract` runs it.

With no build chosen, both eras run on strict reference nodes (upstream's contract only); with
`--codex-image`/`--impl`/`--strict-reference`, that build alone. Each era's container is started
once for its cases and removed after them; its API port is one the engine picks, so `-n 4` runs
these beside anything else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import single
from harness.experiments import contract
from harness.impl import CAP_REFERENCE_EXTRAS, PROFILES
from harness.pytest_plugin import build_under_test
from harness.selection import BuildUnderTest

pytestmark = pytest.mark.contract


def builds(config: pytest.Config) -> list[BuildUnderTest]:
    """The build chosen on the command line, or each era's strict reference node."""
    chosen = build_under_test(config)
    if chosen != BuildUnderTest():
        return [chosen]
    return [BuildUnderTest(impl=era, strict=True) for era in sorted(PROFILES)]


def _label(build: BuildUnderTest) -> str:
    return "-".join([build.impl or "default", *(["strict"] if build.strict else []), build.image or "ref"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"build", "case"} <= set(metafunc.fixturenames):
        pairs, ids = [], []
        for build in builds(metafunc.config):
            era = single.plan_single(build).impl
            for case in contract.cases_for(era):
                pairs.append((build, case.name))
                ids.append(f"{_label(build)}: {case.name}")
        metafunc.parametrize(("build", "case"), pairs, ids=ids, indirect=["build"], scope="module")


@pytest.fixture(scope="module")
def build(request: pytest.FixtureRequest) -> BuildUnderTest:
    return request.param


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, build: BuildUnderTest) -> Iterator[dict[str, contract.Result]]:
    """Every case of the build's era, run once in order (the upload first, the deletes last) on
    one container, removed before the next build's starts."""
    spec = single.plan_single(build)
    deadline = request.config.getoption("--testbed-deadline")
    with single.single_node(spec, deadline_s=deadline, log=lambda _line: None) as node:
        extras = CAP_REFERENCE_EXTRAS in spec.capabilities  # may add keys to upstream's, never drop one
        yield {r.case: r for r in contract.run(node.client, spec.impl, extras)}


def test_the_node_answers_as_upstream_does(results: dict[str, contract.Result], case: str) -> None:
    result = results[case]
    assert result.passed, (
        f"expected {result.expected}, observed {result.observed} (upstream: {result.source})"
    )
