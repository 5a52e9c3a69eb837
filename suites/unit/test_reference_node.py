"""The reference node's identity, records, repo store, config and upload header rules."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from types import SimpleNamespace

import coincurve
import pytest
import trio
from codexref import config, multiaddr, validation
from codexref.blocks import SqliteBlocks
from codexref.dataset import read_local, store_stream
from codexref.store import BlockNotFoundError, QuotaNotEnoughError, RepoStore
from testbed_toolkit import identity, p2p
from testbed_toolkit.cid import BLOCK_CODEC, MANIFEST_CODEC, Cid
from testbed_toolkit.protobuf import iter_fields

KIB64 = 64 * 1024


async def _one_chunk(data: bytes):
    yield data


def upload(store: RepoStore, data: bytes):
    return asyncio.run(store_stream(store, _one_chunk(data), None, None))


# -- identity ---------------------------------------------------------------------------------------
def test_key_file_is_created_0600_and_gives_a_stable_secp256k1_peer_id(tmp_path: Path) -> None:
    first = identity.load_or_create(tmp_path / "key")
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    assert first.peer_id.startswith("16Uiu2HA")
    assert identity.load_or_create(tmp_path / "key").peer_id == first.peer_id


def test_key_file_with_loose_permissions_is_refused(tmp_path: Path) -> None:
    identity.load_or_create(tmp_path / "key")
    os.chmod(tmp_path / "key", 0o644)
    with pytest.raises(identity.KeyFileError, match="must be 0600"):
        identity.load_or_create(tmp_path / "key")


def test_spr_is_a_signed_envelope_over_the_peer_record(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path / "key")
    addr = multiaddr.to_bytes("/ip4/11.200.0.10/udp/8090")
    spr = ident.signed_peer_record([addr], seq=7)
    assert spr.startswith("spr:")
    raw = base64.urlsafe_b64decode(spr[4:] + "=" * (-len(spr[4:]) % 4))
    fields = {n: v for n, _, v in iter_fields(raw)}
    assert fields[2] == b"\x03\x01"
    record = list(iter_fields(fields[3]))
    assert record[0] == (1, 2, ident.peer_id_bytes)
    assert record[1] == (2, 0, 7)
    assert list(iter_fields(record[2][2])) == [(1, 2, addr)]
    signed = b"".join(bytes([len(part)]) + part for part in (b"libp2p-routing-state", b"\x03\x01", fields[3]))
    public = coincurve.PublicKey(dict((n, v) for n, _, v in iter_fields(fields[1]))[2])
    assert public.verify(fields[5], signed)


def test_multiaddr_binary_form() -> None:
    assert multiaddr.to_bytes("/ip4/127.0.0.1/tcp/8070") == bytes([4, 127, 0, 0, 1, 6, 0x1F, 0x86])
    assert multiaddr.to_bytes("/ip4/1.2.3.4/udp/8090")[5:8] == bytes([0x91, 0x02, 0x1F])
    assert multiaddr.with_ip("/ip4/0.0.0.0/tcp/8070", "11.0.0.2") == "/ip4/11.0.0.2/tcp/8070"
    with pytest.raises(ValueError, match="unsupported multiaddr"):
        multiaddr.to_bytes("/dns4/example/tcp/1")


# -- store (every repo kind) ------------------------------------------------------------------------------
def test_a_peer_is_joined_even_when_its_two_connections_were_registered_before_either_notice() -> None:
    """Both peers dialling each other at once: py-libp2p registers both connections before it
    notifies either, so each notice sees two. The peer must still join, and leave only with its
    last connection."""
    peer = object()
    connections: list[object] = []
    network = SimpleNamespace(get_connections=lambda _: list(connections))
    joined: list[object] = []
    left: list[object] = []
    events = p2p.PeerEvents(None, joined.append, left.append)
    first, second = (SimpleNamespace(muxed_conn=SimpleNamespace(peer_id=peer)) for _ in range(2))

    async def scenario() -> None:
        connections.extend([first, second])
        await events.connected(network, first)
        await events.connected(network, second)
        connections.remove(first)
        await events.disconnected(network, first)
        assert left == []
        connections.remove(second)
        await events.disconnected(network, second)

    trio.run(scenario)
    assert peer in joined
    assert left == [peer]


@pytest.fixture(params=["fs", "sqlite"])
def repo_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def age_all_blocks(store: RepoStore) -> None:
    """Make every stored block look stored long ago."""
    if isinstance(store.blocks, SqliteBlocks):
        store.blocks._db().execute("update blocks set stored = 1")
    else:
        for path in store.blocks.root.glob("*/*"):
            os.utime(path, (1, 1))


def test_quota_counts_padded_blocks_and_refuses_overflow_with_upstream_text(
    tmp_path: Path, repo_kind: str
) -> None:
    store = RepoStore(tmp_path, 3 * KIB64, repo_kind)
    cid = upload(store, b"a" * (KIB64 + 1))  # two padded blocks + the manifest block
    used = store.space()["quotaUsedBytes"]
    assert 2 * KIB64 < used < 3 * KIB64
    with pytest.raises(QuotaNotEnoughError, match=r"^Quota usage would exceed the limit\. Used: \d+"):
        upload(store, b"b" * (2 * KIB64))
    assert store.space()["quotaUsedBytes"] <= store.quota_max_bytes
    assert b"".join(read_local(store, store.manifest(cid))) == b"a" * (KIB64 + 1)


def test_identical_blocks_are_stored_once(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    upload(store, b"\0" * (4 * KIB64))
    assert store.space()["totalBlocks"] == 2  # one zero block + manifest


def test_a_batch_reserves_quota_only_for_blocks_not_stored_yet(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    old, new = (Cid.of_data(BLOCK_CODEC, data) for data in (b"old", b"new block"))
    store.put(old, b"old")
    assert store.blocks.stored([old, new]) == {old}
    reservation = store.reserve([(old, b"old"), (new, b"new block")])
    assert reservation.size == len(b"new block")
    store.commit(reservation, store.write(reservation.blocks))
    assert store.space()["quotaUsedBytes"] == len(b"old") + len(b"new block")
    assert store.quota_reserved_bytes == 0


def test_store_survives_reopening(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    cid = upload(store, b"persist me" * 10000)
    reopened = RepoStore(tmp_path, 1 << 30, repo_kind)
    assert reopened.space() == store.space()
    assert [c for c, _ in reopened.manifests()] == [cid]
    assert b"".join(read_local(reopened, reopened.manifest(cid))) == b"persist me" * 10000


def test_leaves_of_a_tree_being_downloaded_are_kept_in_memory_and_on_disk(tmp_path: Path) -> None:
    store = RepoStore(tmp_path, 1 << 30)
    tree = upload(RepoStore(tmp_path / "other", 1 << 30), b"t" * (3 * KIB64))
    tree_cid = RepoStore(tmp_path / "other", 1 << 30).manifest(tree).tree_cid
    store.ensure_tree(tree_cid, 3)
    assert store.leaf_digest(tree_cid, 1) is None
    store.put_leaves(tree_cid, {2: b"\x02" * 32, 0: b"\x03" * 32})  # one write spans leaf 1 too
    store.put_leaves(tree_cid, {1: b"\x01" * 32})
    assert store.leaf_digest(tree_cid, 1) == b"\x01" * 32
    reopened = RepoStore(tmp_path, 1 << 30)  # what a restart reads back from the tree's file
    assert reopened.tree_leaves(tree_cid) == [b"\x03" * 32, b"\x01" * 32, b"\x02" * 32]
    store.put_leaves(tree_cid, {0: b"\x04" * 32})
    assert RepoStore(tmp_path, 1 << 30).tree_leaves(tree_cid)[:2] == [b"\x04" * 32, b"\x01" * 32]
    assert reopened.leaf_digest(tree_cid, 3) is None  # past the end


def test_delete_keeps_blocks_another_dataset_uses(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    shared = b"s" * KIB64
    first = upload(store, shared + b"x" * KIB64)
    second = upload(store, shared + b"y" * KIB64)
    store.delete(first)
    assert not store.has(first)
    assert b"".join(read_local(store, store.manifest(second))) == shared + b"y" * KIB64
    store.delete(second)
    assert store.space()["totalBlocks"] == 0 and store.space()["quotaUsedBytes"] == 0
    store.delete(second)  # absent: still fine (upstream answers 204)


def test_a_block_cid_is_not_a_dataset(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    manifest = store.manifest(upload(store, b"z"))
    assert manifest.tree_cid.codec != MANIFEST_CODEC
    with pytest.raises(BlockNotFoundError):
        store.manifest(manifest.tree_cid)


def test_expiry_removes_blocks_older_than_the_ttl(tmp_path: Path, repo_kind: str) -> None:
    store = RepoStore(tmp_path, 1 << 30, repo_kind)
    upload(store, b"old" * 30000)
    age_all_blocks(store)
    blocks = store.space()["totalBlocks"]
    assert store.expire(ttl_seconds=0, max_blocks=100) == 0  # 0 disables
    assert store.expire(ttl_seconds=60, max_blocks=1) == 1  # --block-mn bounds one cycle
    assert store.expire(ttl_seconds=60, max_blocks=100) == blocks - 1
    assert store.space() == {
        "totalBlocks": 0,
        "quotaMaxBytes": 1 << 30,
        "quotaUsedBytes": 0,
        "quotaReservedBytes": 0,
    }


# -- config and header rules ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"), [("1024", 1024), ("20GiB", 20 << 30), ("512MB", 512 << 20), ("64k", 64 << 10)]
)
def test_byte_sizes_use_binary_units(text: str, value: int) -> None:
    assert config.parse_bytes(text) == value


def test_cli_flags_win_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODEX_API_PORT", "9000")
    monkeypatch.setenv("CODEX_STORAGE_QUOTA", "1MiB")
    monkeypatch.setenv("CODEX_NAT", "extip:11.0.0.5")
    conf = config.load(["--data-dir", str(tmp_path), "--api-port", "9100"])
    assert conf.api_port == 9100 and conf.storage_quota == 1 << 20 and conf.announce_ip == "11.0.0.5"


def test_repo_kinds_are_upstreams_fs_and_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert config.load(["--data-dir", str(tmp_path), "--repo-kind", "sqlite"]).repo_kind == "sqlite"
    with pytest.raises(SystemExit):
        config.load(["--data-dir", str(tmp_path), "--repo-kind", "pack"])
    assert "argument --repo-kind: invalid choice: 'pack' (choose from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config.load(["--data-dir", str(tmp_path)], environ={"CODEX_REPO_KIND": "pack"})
    assert "CODEX_REPO_KIND: invalid choice: 'pack'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "0.0", "-1", "nan", "inf", "soon"])
def test_a_timeout_must_be_a_positive_number_of_seconds(value: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        config.load(["--data-dir", str(tmp_path), "--api-body-timeout", value])


@pytest.mark.parametrize("mime", ["application/octet-stream", "text/plain", "image/png", "application/json"])
def test_known_mimetypes(mime: str) -> None:
    assert validation.is_known_mimetype(mime)


@pytest.mark.parametrize("mime", ["foo/bar", "text/plain; charset=utf-8", "nonsense"])
def test_unknown_mimetypes(mime: str) -> None:
    assert not validation.is_known_mimetype(mime)


@pytest.mark.parametrize(
    ("header", "filename"),
    [
        ('attachment; filename="a.bin"', "a.bin"),
        ('filename="archive-data.bin"', "archive-data.bin"),  # no disposition type, as upstream takes
        ("attachment; filename=a.bin", "a.bin"),  # a token (RFC 6266); upstream ignores it
        ('attachment; filename="a;b.bin"; size=5', "a;b.bin"),
        ('inline; filename="say \\"hi\\".txt"', 'say "hi".txt'),
        ("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        ("attachment", None),
        ("", None),
    ],
)
def test_content_disposition_parsing_follows_rfc_6266(header: str, filename: str | None) -> None:
    assert validation.filename_from_content_disposition(header) == filename


@pytest.mark.parametrize(
    "header",
    [
        'attachment; filename="abc',  # upstream stored this as `ab`
        'attachment; filename="a.bin" junk',
        'attachment; filename="x"; filename="y"',
        "attachment; filename*=UTF-8''%FF.bin",
        "attachment;; filename=a.bin",
        pytest.param("(" * 300 + "attachment", id="comments-nested-300-deep"),  # one recursion each
        pytest.param('attachment; filename="' + "a" * 1100 + '"', id="longer-than-1KiB"),
    ],
)
def test_a_malformed_content_disposition_is_an_error(header: str) -> None:
    with pytest.raises(validation.ContentDispositionError):
        validation.filename_from_content_disposition(header)


@pytest.mark.parametrize("name", ["a.bin", "archive-data.bin", "report 2024.pdf", "noext"])
def test_valid_filenames(name: str) -> None:
    assert validation.is_valid_filename(name)


@pytest.mark.parametrize(
    "name",
    [
        *("", "a/b", "a:b", "what?", "trailing.", " lead", "CON", "com1.txt"),
        pytest.param("x" * 300, id="300-bytes"),
        pytest.param("ä" * 200, id="200-chars-400-bytes"),  # Nim counts bytes
    ],
)
def test_invalid_filenames(name: str) -> None:
    assert not validation.is_valid_filename(name)
