"""The Codex REST contract (docs/reference-node.md, "What it implements": REST; per era,
docs/real-images.md, "The two contracts") as a real node in a container answers it."""

from __future__ import annotations

import pytest

from harness.clients.codex import announced_addresses
from harness.testbed import Testbed
from suites.functional.helpers import random_bytes

pytestmark = pytest.mark.codex
TOPOLOGY = "basic"
UNKNOWN_CID = "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXz"  # valid form, never uploaded


def test_upload_returns_the_upstream_cids(testbed: Testbed) -> None:
    client = testbed.client("codex-1")
    assert client.upload(b"some file contents") == "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy"
    cid = client.upload(
        b"Hello, Codex! This is test data for upload.",
        filename="test-data.bin",
        mimetype="application/octet-stream",
    )
    assert cid == "zDvZRwzm8K7bcyPeBXcZzWD7AWc4VqNuseduDr3VsuYA1yXej49V"


def test_download_headers_follow_the_manifest(testbed: Testbed) -> None:
    client = testbed.client("codex-2")
    data = random_bytes(70_000)
    named = client.upload(data, filename="report.pdf", mimetype="application/pdf")
    response = client.request("GET", f"/data/{named}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    assert response.headers["Content-Length"] == "70000"
    assert response.content == data

    plain = client.request("GET", f"/data/{client.upload(data)}")
    assert plain.headers["Content-Type"] == "application/octet-stream"
    assert plain.headers["Content-Disposition"] == "attachment"


def test_list_shows_data_items(testbed: Testbed) -> None:
    client = testbed.client("codex-3")
    cid = client.upload(b"listed", filename="l.txt", mimetype="text/plain")
    item = next(i for i in client.list() if i["cid"] == cid)
    assert item["manifest"]["datasetSize"] == 6
    assert item["manifest"]["blockSize"] == 65536
    assert item["manifest"]["filename"] == "l.txt" and item["manifest"]["mimetype"] == "text/plain"
    assert item["manifest"]["treeCid"].startswith("zDzSvJT") and item["manifest"]["protected"] is False


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "foo/bar"}, "The MIME type 'foo/bar' is not valid."),
        ({"Content-Disposition": 'attachment; filename="a/b.txt"'}, "The filename is not valid."),
    ],
)
def test_bad_upload_headers_give_422_and_store_nothing(testbed: Testbed, headers: dict, body: str) -> None:
    client = testbed.client("codex-1")
    before = client.space()
    response = client.request("POST", "/data", data=b"payload", headers=headers)
    assert (response.status_code, response.text) == (422, body)
    assert client.space() == before


def test_unknown_cid_is_404_locally_and_exists_is_keyed_by_cid(testbed: Testbed) -> None:
    client = testbed.client("codex-1")
    response = client.request("GET", f"/data/{UNKNOWN_CID}")
    assert response.status_code == 404
    assert response.text == "The requested CID could not be retrieved (Block not found in local store)."
    assert client.request("GET", f"/data/{UNKNOWN_CID}/exists").json() == {UNKNOWN_CID: False}


def test_delete_is_always_204(testbed: Testbed) -> None:
    client = testbed.client("codex-2")
    cid = client.upload(random_bytes(200_000))
    used = client.space()["quotaUsedBytes"]
    client.delete(cid)
    assert not client.exists(cid)
    assert client.space()["quotaUsedBytes"] < used
    client.delete(cid)
    client.delete(UNKNOWN_CID)


def test_identity_endpoints_answer_text_or_json(testbed: Testbed) -> None:
    client = testbed.client("codex-3")
    info = client.debug_info()
    assert client.peer_id() == info["id"] and info["id"].startswith("16Uiu2HA")
    assert client.request("GET", "/peerid").json() == {"id": info["id"]}
    assert client.spr() == info["spr"]
    assert client.request("GET", "/spr").json() == {"spr": info["spr"]}
    node = testbed.plan.nodes["codex-3"]
    assert announced_addresses(info) == [f"/ip4/{node.ip}/tcp/8070"]
    if node.impl == "codex":  # the discv5 table; the Logos era's is Kad-DHT's, over TCP
        assert info["table"]["localNode"]["address"] == f"{node.ip}:8090"


def test_log_level_endpoint(testbed: Testbed) -> None:
    client = testbed.client("codex-1")
    assert client.request("POST", "/debug/chronicles/loglevel", params={"level": "DEBUG"}).status_code == 200
    missing = client.request("POST", "/debug/chronicles/loglevel")
    assert (missing.status_code, missing.text) == (400, "Missing log level")
    assert client.request("POST", "/debug/chronicles/loglevel", params={"level": "LOUD"}).status_code == 500
    client.set_log_level("INFO")


def test_marketplace_routes_answer_as_their_era_does(testbed: Testbed) -> None:
    """Codex era: the marketplace routes exist and answer 503 without persistence. Logos era: the
    marketplace is gone (PR #1362), so they are unknown routes: 404 with an empty body."""
    response = testbed.client("codex-1").request("GET", "/sales/slots")
    if testbed.plan.nodes["codex-1"].impl == "codex":
        assert (response.status_code, response.text) == (503, "Persistence is not enabled")
    else:
        assert (response.status_code, response.text) == (404, "")
