"""BlockExchange between nodes: network downloads are byte-identical for every size class."""

from __future__ import annotations

import pytest
import requests

from harness.testbed import Testbed
from suites.functional.helpers import random_bytes, sha256

pytestmark = [pytest.mark.codex, pytest.mark.blockexchange]
TOPOLOGY = "blockexchange"
MIB = 1024 * 1024


@pytest.mark.parametrize(
    "size", [1, 64 * 1024, 64 * 1024 + 1, 50 * MIB], ids=["1B", "64KiB", "64KiB+1", "50MiB"]
)
def test_upload_on_one_node_stream_from_the_others(testbed: Testbed, size: int) -> None:
    data = random_bytes(size)
    cid = testbed.client("codex-1").upload(data)
    for node in ("codex-2", "codex-3"):
        assert sha256(testbed.client(node, timeout_s=120).network_stream(cid)) == sha256(data), node
        assert testbed.client(node).exists(cid)


def test_network_download_runs_in_the_background_then_serves_locally(testbed: Testbed) -> None:
    data = random_bytes(3 * MIB + 5)
    cid = testbed.client("codex-2").upload(data, filename="bg.bin", mimetype="application/octet-stream")
    item = testbed.client("codex-3").network_download(cid)
    assert item["cid"] == cid and item["manifest"]["datasetSize"] == len(data)
    assert item["manifest"]["filename"] == "bg.bin"
    assert sha256(testbed.client("codex-3").download(cid)) == sha256(data)


def test_manifest_only_fetch_then_local_get_fetches_the_blocks(testbed: Testbed) -> None:
    data = random_bytes(2 * MIB)
    cid = testbed.client("codex-3").upload(data)
    manifest = testbed.client("codex-1").network_manifest(cid)
    assert manifest["manifest"]["treeCid"].startswith("zDzSvJT")
    assert testbed.client("codex-1").exists(cid)
    # upstream's quirk: a local GET with only the manifest local fetches the blocks while streaming
    assert sha256(testbed.client("codex-1").download(cid)) == sha256(data)


UNKNOWN_CID = "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXz"


def test_unknown_cid_hangs_with_the_default_retry_budget_and_the_node_stays_up(testbed: Testbed) -> None:
    client = testbed.client("codex-2")
    with pytest.raises(requests.Timeout):
        client.request("GET", f"/data/{UNKNOWN_CID}/network/manifest", timeout=3)
    assert client.debug_info()["id"]


def test_unknown_cid_gives_404_once_a_small_retry_budget_is_spent(testbed: Testbed) -> None:
    response = testbed.client("codex-3").request("GET", f"/data/{UNKNOWN_CID}/network/manifest", timeout=60)
    assert response.status_code == 404
    assert "retries exhausted" in response.text
    assert testbed.metric("codex-3", "block_exchange_requests_failed_total") >= 1
