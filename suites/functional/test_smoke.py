"""Smoke: a whole topology comes up and each node stores and serves data correctly."""

from __future__ import annotations

import pytest

from harness.selection import BuildUnderTest
from harness.testbed import Testbed
from suites.functional.helpers import random_bytes, sha256

pytestmark = pytest.mark.smoke
TOPOLOGY = "smoke"
SIZES = [1, 64 * 1024, 64 * 1024 + 1, 5 * 1024 * 1024 + 3]


@pytest.mark.parametrize("node", ["codex-1", "codex-2", "codex-3"])
@pytest.mark.parametrize("size", SIZES[:3])
def test_upload_then_download_is_byte_identical_on_every_node(testbed: Testbed, node: str, size: int) -> None:
    data = random_bytes(size)
    client = testbed.client(node)
    cid = client.upload(data)
    assert cid.startswith("zDvZRwz")
    assert sha256(client.download(cid)) == sha256(data)
    assert client.exists(cid)


@pytest.mark.parametrize("node", ["codex-1", "codex-2"])
def test_multi_megabyte_dataset_round_trips(testbed: Testbed, node: str) -> None:
    data = random_bytes(SIZES[-1])
    client = testbed.client(node)
    cid = client.upload(data)
    assert sha256(client.download(cid)) == sha256(data)


def test_data_and_identity_survive_a_node_restart(testbed: Testbed) -> None:
    client = testbed.client("codex-1")
    data = random_bytes(300_000)
    cid = client.upload(data, filename="keep.bin", mimetype="application/octet-stream")
    peer_id, space = client.peer_id(), client.space()

    exit_code = testbed.restart("codex-1")

    assert exit_code == 0, "SIGTERM must stop the node gracefully"

    assert client.peer_id() == peer_id, "the key file must persist the peer id"
    assert client.space() == space
    assert sha256(client.download(cid)) == sha256(data)
    assert any(item["cid"] == cid for item in client.list())


def test_quota_exceeded_gives_the_documented_error_and_loses_nothing(testbed: Testbed) -> None:
    client = testbed.client("codex-3")
    quota = client.space()["quotaMaxBytes"]
    assert quota == 2 * 1024 * 1024
    kept = random_bytes(100_000)
    kept_cid = client.upload(kept)

    response = client.request("POST", "/data", data=random_bytes(3 * 1024 * 1024))

    assert response.status_code == 500
    assert response.text.startswith("Quota usage would exceed the limit. Used: ")
    assert response.text.endswith(f"limit: {quota}")
    assert client.space()["quotaUsedBytes"] <= quota
    # Like upstream, blocks stored before the limit was hit stay until their TTL; what was
    # stored before is intact and the node keeps serving.
    assert sha256(client.download(kept_cid)) == sha256(kept)
    assert client.debug_info()["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/data/not-a-cid"),
        ("GET", "/data/zzzz/exists"),
        ("DELETE", "/data/Qmnotacodexcid"),
        ("GET", "/data/z/network/manifest"),
    ],
)
def test_malformed_cid_gives_400(testbed: Testbed, method: str, path: str) -> None:
    response = testbed.client("codex-2").request(method, path)
    assert response.status_code == 400
    assert response.text in ("Incorrect Cid", "Unsupported Cid")


def test_a_node_whose_debug_info_lists_no_connections_still_comes_up_peered() -> None:
    """Upstream's Codex-era `/debug/info` shows a `/connect` connection nowhere (`table` is the
    discv5 table) and has no /debug/connection: readiness must not rely on either. The reference
    node in strict mode serves exactly that, so peering is read from nim-libp2p's peer gauge."""
    strict = BuildUnderTest(impl="codex", strict=True)
    with Testbed.up("basic", log=lambda _: None, build=strict) as testbed:
        assert "peering" in {step.layer for step in testbed.readiness.steps}
        for name, node in testbed.plan.nodes.items():
            client = testbed.client(name)
            info = client.debug_info()
            assert info["table"]["nodes"] == [] and "connections" not in info, info
            assert client.request("GET", f"/debug/connection/{info['id']}").status_code == 404
            assert testbed.metrics(name)["libp2p_peers"] >= len(node.peers)
