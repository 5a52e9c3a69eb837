"""The status peer's embedded storage node (statusref/embedded.py): libstorage's config keys and
status-go's overrides become the node's options, a bad one is refused by name, and two embedded
nodes in one process upload, connect, fetch, stream and delete over real libp2p on loopback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID
from statusref.embedded import EmbeddedStorage, config_argv, config_from_overrides, load_config
from statusref.storage import StorageError, StorageTimeout


def test_libstorage_keys_are_the_nodes_long_options() -> None:
    config = {"listen-port": 8070, "bootstrap-node": ["spr:a", "spr:b"], "metrics": True, "strict": False}
    assert config_argv(config) == [
        "--listen-port", "8070", "--bootstrap-node", "spr:a", "--bootstrap-node", "spr:b", "--metrics",
    ]  # fmt: skip


def test_a_config_is_read_alone_never_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_BLOCK_RETRIES", "7")
    monkeypatch.setenv("CODEX_DATA_DIR", "/datadir")  # the node image's defaults, inherited
    loaded = load_config({"data-dir": str(tmp_path), "block-retries": 12})
    assert (loaded.era.name, loaded.block_retries, loaded.data_dir) == ("logos-storage", 12, tmp_path)
    assert loaded.api_bindaddr is None, "libstorage serves no REST"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"block-retries": "many"}, "--block-retries"),
        ({"no-such-option": "1"}, "no-such-option"),
        ({"repo-kind": "pack"}, "repo-kind"),
    ],
)
def test_a_bad_config_is_refused_naming_the_option(tmp_path: Path, config: dict, named: str) -> None:
    with pytest.raises(StorageError, match="invalid storage config") as caught:
        load_config({"data-dir": str(tmp_path), **config})
    assert named in str(caught.value)


def test_status_go_overrides_become_libstorage_keys() -> None:
    overrides = {
        "NodeConfig.BootstrapNodes": json.dumps(["spr:a", "spr:b"]),
        "NodeConfig.BlockRetries": "5",
        "NodeConfig.MetricsEnabled": "true",
        "NodeConfig.DiscoveryPort": "8091",  # upstream's test passes it; the 2026 node has no discv5
        "Enabled": "true",
    }
    assert config_from_overrides(overrides) == {
        "bootstrap-node": ["spr:a", "spr:b"],
        "block-retries": "5",
        "metrics": True,
    }
    assert config_from_overrides({"NodeConfig.BootstrapNodes": "spr:a,spr:b"}) == {
        "bootstrap-node": ["spr:a", "spr:b"]
    }
    with pytest.raises(StorageError, match=r"unknown storage config override 'NodeConfig\.Nope'"):
        config_from_overrides({"NodeConfig.Nope": "1"})


def test_a_bad_override_keeps_the_config_it_had(tmp_path: Path) -> None:
    storage = EmbeddedStorage({"data-dir": str(tmp_path), "block-retries": 3})
    with pytest.raises(StorageError):
        storage.configure({"NodeConfig.BlockRetries": "x"})
    assert storage.config.block_retries == 3
    storage.configure({"NodeConfig.BlockRetries": "9"})
    assert storage.config.block_retries == 9


def _embedded(folder: Path, retries: int = 2, port: int = 0) -> EmbeddedStorage:
    return EmbeddedStorage(
        {
            "data-dir": str(folder),
            "listen-ip": "127.0.0.1",
            "listen-port": port,
            "nat": "extip:127.0.0.1",
            "block-retries": retries,
        }
    )


def test_two_embedded_nodes_exchange_a_dataset_over_libp2p(tmp_path: Path) -> None:
    data = os.urandom(300_000)  # five blocks, the last one padded

    async def scenario() -> None:
        owner, member = _embedded(tmp_path / "owner"), _embedded(tmp_path / "member")
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(owner.run)
                await nursery.start(member.run)
                cid = await owner.upload(data, "archive-data.bin")
                assert await owner.has_cid(cid) and not await member.has_cid(cid)
                info = await owner.debug()
                await member.connect(info["id"], info["addrs"])
                assert await member.download_network(cid, timeout=20) == data
                assert await member.has_cid(cid)
                item = await member.trigger_download(cid, timeout=20)
                assert (item["cid"], item["manifest"]["filename"]) == (cid, "archive-data.bin")
                assert await member.local_download(cid) == data
                await owner.remove(cid)
                assert not await owner.has_cid(cid)
                with pytest.raises(StorageError):
                    await owner.local_download(cid)
                nursery.cancel_scope.cancel()
        assert owner.node is None, "a stopped node is gone (storage_stop)"
        with pytest.raises(StorageError, match="not started"):
            await owner.has_cid(cid)

    trio.run(scenario)


@pytest.mark.parametrize(
    ("retries", "timeout_s", "raised"),
    [(3000, 1, StorageTimeout), (1, 30, StorageError)],
    ids=["the-timeout-ends-it", "the-retries-end-it"],
)
def test_a_download_nobody_can_serve_fails(tmp_path: Path, retries: int, timeout_s: float, raised) -> None:
    async def scenario() -> None:
        source, lonely = _embedded(tmp_path / "source"), _embedded(tmp_path / "lonely", retries)
        async with trio.open_nursery() as nursery:
            await nursery.start(source.run)
            await nursery.start(lonely.run)
            cid = await source.upload(b"kept to itself" * 1000, "archive-index.bin")
            with pytest.raises(raised) as caught:  # not connected: no peer has it
                await lonely.download_network(cid, timeout=timeout_s)
            assert (raised is StorageTimeout) == isinstance(caught.value, StorageTimeout)
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_stopped_node_is_gone_for_its_peers_and_restarts_on_its_port(tmp_path: Path) -> None:
    """Logout stops the embedded node and login starts a new one in the same process (status-go:
    Stop, Destroy, then a new node). The stopped one must close its connections and listener,
    or the owner keeps a dead connection to the member and answers its wants there."""
    data = os.urandom(5000)

    async def scenario() -> None:
        owner = _embedded(tmp_path / "owner")
        async with trio.open_nursery() as nursery:
            await nursery.start(owner.run)
            spr, owner_id = (await owner.debug())["spr"], (await owner.debug())["id"]
            member = _embedded(tmp_path / "member")
            member.configure({"NodeConfig.BootstrapNodes": spr})
            await nursery.start(member.run)
            member_id = (await member.debug())["id"]
            port = int(member.node.listen_addresses[0].rsplit("/", 1)[1])
            before = await owner.upload(data, "before")
            assert await member.download_network(before, timeout=10) == data
            await member.stop()
            assert member.node is None
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(5):  # the owner sees it go
                while owner.node.host.get_network().get_connections(ID.from_base58(member_id)):
                    await trio.sleep(0.05)

            again = _embedded(tmp_path / "member", port=port)
            again.configure({"NodeConfig.BootstrapNodes": spr})
            await nursery.start(again.run)
            assert (await again.debug())["id"] == member_id, "the same identity, from its data dir"
            after = await owner.upload(data[::-1], "after")
            assert await again.download_network(after, timeout=10) == data[::-1]
            assert owner_id != member_id
            nursery.cancel_scope.cancel()

    trio.run(scenario)
