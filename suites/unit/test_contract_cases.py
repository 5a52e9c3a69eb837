"""The REST contract's checker: each case is judged on status, body or keys, and says why."""

from __future__ import annotations

import json

import pytest
import requests

from harness.experiments import contract
from harness.experiments.contract import SAMPLE_CID, Case


def response(status: int, body: str | dict) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = (json.dumps(body) if isinstance(body, dict) else body).encode()
    return answer


def test_an_exact_answer_passes_and_each_difference_is_named() -> None:
    case = Case("malformed CID", "GET", "/data/x", 400, text="Incorrect Cid")
    assert contract.check(case, response(400, "Incorrect Cid")).passed
    wrong_body = contract.check(case, response(400, "Invalid CID"))
    assert not wrong_body.passed and wrong_body.observed == "400 'Invalid CID' (body differ)"
    assert "(status, body differ)" in contract.check(case, response(500, "boom")).observed


def test_json_is_compared_after_substitution_and_keys_exactly() -> None:
    exists = Case("exists", "GET", "/data/{cid}/exists", 200, json={"{cid}": True})
    assert exists.url_path() == f"/data/{SAMPLE_CID}/exists"
    assert contract.check(exists, response(200, {SAMPLE_CID: True})).passed
    assert not contract.check(exists, response(200, {SAMPLE_CID: False})).passed
    info = Case("info", "GET", "/debug/info", 200, json_keys=("id", "spr"))
    assert contract.check(info, response(200, {"spr": "s", "id": "i"})).passed
    extra = contract.check(info, response(200, {"spr": "s", "id": "i", "relay": {}}))
    assert not extra.passed and "keys id, relay, spr" in extra.observed
    assert "not JSON" in contract.check(info, response(200, "<html>")).observed
    with_extras = contract.check(info, response(200, {"spr": "s", "id": "i", "relay": {}}), extras=True)
    assert with_extras.passed and with_extras.observed.endswith("(+ extras relay)'")
    missing = contract.check(info, response(200, {"id": "i", "relay": {}}), extras=True)
    assert not missing.passed, "extras may add keys, never drop one of upstream's"


@pytest.mark.parametrize("era", contract.BOTH_ERAS)
def test_each_era_uploads_first_and_deletes_last(era: str) -> None:
    names = [case.name for case in contract.cases_for(era)]
    assert names[0] == "upload returns the CID" and names[-3:-1] == ["delete", "exists after delete"]
    assert len(set(names)) == len(names)


def test_the_expected_column_reads_as_upstreams_answer() -> None:
    assert Case("a", "GET", "/", 404, text="").expected() == "404 ''"
    assert Case("b", "GET", "/spr", 200, text_prefix="spr:").expected() == "200 'spr:...'"
    assert Case("c", "GET", "/space", 200, json_keys=("b", "a")).expected() == "200 'keys a, b'"
    assert Case("d", "DELETE", "/x", 204).expected() == "204"


def test_the_contracts_sample_cid_is_the_upstream_vector() -> None:
    """The contract pins the nim-codex integration test's vector, also checked byte for byte by
    the content-addressing tests: the two must not drift apart."""
    from suites.unit.test_content_addressing import VECTORS

    vector = next(v.values for v in VECTORS if v.id == "nim-codex-integration-test")
    data, filename, mimetype, *_, manifest_cid = vector
    assert (data, filename, mimetype, manifest_cid) == (contract.SAMPLE, None, None, contract.SAMPLE_CID)
