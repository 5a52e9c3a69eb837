"""BlockExchange in a six-node mesh: many downloaders, several seeders, seeders that disappear.

Tests run in file order on one testbed and later ones stop nodes, so they are ordered on purpose.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.paths import artifacts_dir
from harness.testbed import Testbed
from suites.functional.helpers import random_bytes, sha256

pytestmark = [pytest.mark.blockexchange]
TOPOLOGY = "swarm"
MIB = 1024 * 1024
NODES = [f"codex-{i}" for i in range(1, 7)]
# Named without the era's prefix (codex_ / storage_): Testbed.metric adds the node's.
BLOCKS_SENT = "block_exchange_blocks_sent_total"
RECEIVED = "block_exchange_blocks_received_total"
DUPLICATES = (
    "block_exchange_duplicate_blocks_received_total",  # the reference node's, not upstream's
    "block_exchange_spurious_blocks_received_total",
)


def counters(testbed: Testbed, nodes: list[str], *names: str) -> dict[str, float]:
    def total(node: str) -> float:
        samples = testbed.metrics(node)
        return sum(testbed.metric(node, name, samples) for name in names)

    return {node: total(node) for node in nodes}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {node: after[node] - before[node] for node in after}


def test_one_seeder_five_simultaneous_downloaders_duplicate_ratio(testbed: Testbed) -> None:
    data = random_bytes(20 * MIB)
    cid = testbed.client("codex-1").upload(data)
    downloaders = NODES[1:]
    received_before = counters(testbed, downloaders, RECEIVED)
    dup_before = counters(testbed, downloaders, *DUPLICATES)

    with ThreadPoolExecutor(len(downloaders)) as pool:
        digests = list(
            pool.map(lambda n: sha256(testbed.client(n, timeout_s=300).network_stream(cid)), downloaders)
        )

    assert digests == [sha256(data)] * len(downloaders)
    received = sum(delta(counters(testbed, downloaders, RECEIVED), received_before).values())
    duplicates = sum(delta(counters(testbed, downloaders, *DUPLICATES), dup_before).values())
    blocks = 320 * len(downloaders)  # 20 MiB = 320 blocks each
    assert received >= blocks
    ratio = duplicates / received
    result = {
        "downloaders": len(downloaders),
        "blocks_received": received,
        "duplicates": duplicates,
        "ratio": ratio,
    }
    out = artifacts_dir(testbed.plan.project) / "duplicate-ratio.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"duplicate-block ratio 1 seeder -> 5 downloaders: {ratio:.4f} ({result})")
    assert ratio < 0.05, f"duplicate deliveries regressed: {result}"


def test_a_download_takes_blocks_from_each_of_three_seeders(testbed: Testbed) -> None:
    data = random_bytes(30 * MIB)
    cid = testbed.client("codex-1").upload(data)
    for seeder in ("codex-2", "codex-3"):
        assert sha256(testbed.client(seeder, timeout_s=300).network_stream(cid)) == sha256(data)
    seeders = ["codex-1", "codex-2", "codex-3"]
    before = counters(testbed, seeders, BLOCKS_SENT)

    assert sha256(testbed.client("codex-4", timeout_s=300).network_stream(cid)) == sha256(data)

    sent = delta(counters(testbed, seeders, BLOCKS_SENT), before)
    assert all(count > 0 for count in sent.values()), f"blocks sent per seeder: {sent}"
    assert sum(sent.values()) >= 480  # 30 MiB = 480 blocks
    print(f"blocks sent per seeder for one 30 MiB download: {sent}")


def test_a_seeder_killed_mid_download_does_not_stop_the_download(testbed: Testbed) -> None:
    data = random_bytes(40 * MIB)
    cid = testbed.client("codex-1").upload(data)
    for seeder in ("codex-2", "codex-3"):
        testbed.client(seeder, timeout_s=300).network_stream(cid)
    digest, got, killed = hashlib.sha256(), 0, False

    with testbed.client("codex-5", timeout_s=300).request(
        "GET", f"/data/{cid}/network/stream", stream=True
    ) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(256 * 1024):
            digest.update(chunk)
            got += len(chunk)
            if not killed and got >= 8 * MIB:
                testbed.kill("codex-2")
                killed = True

    assert killed and got == len(data)
    assert digest.hexdigest() == sha256(data)


def test_a_finished_downloader_serves_a_newcomer_after_the_uploader_stopped(testbed: Testbed) -> None:
    data = random_bytes(10 * MIB)
    cid = testbed.client("codex-3").upload(data)
    assert sha256(testbed.client("codex-4", timeout_s=300).network_stream(cid)) == sha256(data)
    before = counters(testbed, ["codex-4"], BLOCKS_SENT)["codex-4"]
    assert testbed.stop("codex-3") == 0  # the uploader is gone: only codex-4 has the data now

    assert sha256(testbed.client("codex-6", timeout_s=300).network_stream(cid)) == sha256(data)
    assert counters(testbed, ["codex-4"], BLOCKS_SENT)["codex-4"] - before >= 160  # 10 MiB = 160 blocks
