"""The REST contract of the node's implementation, case by case (harness/contract.py): every
answer as upstream gives it. `testbed contract` prints the same cases as a conformance table."""

from __future__ import annotations

import pytest

from harness import contract
from harness.impl import CAP_REFERENCE_EXTRAS
from harness.testbed import Testbed

pytestmark = pytest.mark.contract
TOPOLOGY = "contract"


@pytest.fixture(scope="module")
def results(testbed: Testbed) -> dict[str, contract.Result]:
    """Every case of the node's era, run once in order (the upload first, the deletes last)."""
    node = testbed.plan.nodes["codex-1"]
    extras = CAP_REFERENCE_EXTRAS in node.capabilities  # may add keys to upstream's, never drop one
    return {r.case: r for r in contract.run(testbed.client(node.name), node.impl, extras)}


@pytest.mark.parametrize("case", [case.name for case in contract.CASES])
def test_the_node_answers_as_upstream_does(results: dict[str, contract.Result], case: str) -> None:
    if case not in results:
        pytest.skip("a case of the other era")
    result = results[case]
    assert result.passed, (
        f"expected {result.expected}, observed {result.observed} (upstream: {result.source})"
    )
