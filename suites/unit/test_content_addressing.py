"""Byte-exact content addressing (docs/reference-node.md, "Wire formats": CID, manifest block, Merkle
tree and proof): CID vectors, manifest codec, Merkle proofs."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest
from codexref.dataset import store_stream
from codexref.manifest import BLOCK_SIZE, Manifest
from codexref.store import RepoStore
from testbed_toolkit import merkle
from testbed_toolkit.cid import BLOCK_CODEC, MANIFEST_CODEC, ROOT_CODEC, Cid, CidError
from testbed_toolkit.protobuf import DecodeError, bytes_field, decode_varint, encode_varint, varint_field

# (data, filename, mimetype) -> (first block CID, treeCid, manifest CID)
VECTORS = [
    pytest.param(
        b"some file contents",
        None,
        None,
        "zDxWB8ED98hxJ51XwYaoQAwMdskCcmTaPR6Ce2wq88bjvjXRYuR9",
        "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL",
        "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy",
        id="nim-codex-integration-test",
    ),
    pytest.param(
        b"Hello, Codex! This is test data for upload.",
        "test-data.bin",
        "application/octet-stream",
        None,
        None,
        "zDvZRwzm8K7bcyPeBXcZzWD7AWc4VqNuseduDr3VsuYA1yXej49V",
        id="go-codex-client-readme",
    ),
    pytest.param(
        b"\xab" * 200000,
        None,
        None,
        None,
        "zDzSvJTf6ffEZM2k9wJhe9X369RWWWCL6qh6yQHM5EwMKipKN68C",
        "zDvZRwzm7iN6po27S9UHJaUY8pM4BeybVNNPzPywhXGGe7BnQKqW",
        id="four-blocks-derived",
    ),
]


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def upload(store: RepoStore, data: bytes, filename=None, mimetype=None, chunk: int = 10_000) -> Cid:
    return asyncio.run(store_stream(store, _chunks(data, chunk), filename, mimetype))


@pytest.mark.parametrize(("data", "filename", "mimetype", "block", "tree", "manifest"), VECTORS)
def test_upstream_cid_vectors(tmp_path: Path, data, filename, mimetype, block, tree, manifest) -> None:
    store = RepoStore(tmp_path, 1 << 30)
    cid = upload(store, data, filename, mimetype)
    assert str(cid) == manifest
    decoded = store.manifest(cid)
    if tree:
        assert str(decoded.tree_cid) == tree
    if block:
        assert str(Cid(BLOCK_CODEC, store.tree_leaves(decoded.tree_cid)[0])) == block


def test_cid_prefixes_and_round_trip() -> None:
    digest = hashlib.sha256(b"x").digest()
    for codec, prefix in ((MANIFEST_CODEC, "zDvZRwz"), (BLOCK_CODEC, "zDxWB8ED"), (ROOT_CODEC, "zDzSvJT")):
        cid = Cid(codec, digest)
        assert str(cid).startswith(prefix)
        assert Cid.parse(str(cid)) == cid
        assert Cid.from_bytes(cid.to_bytes()) == cid


@pytest.mark.parametrize("text", ["", "z", "notacid", "zzzz", "Qm" + "1" * 44, "z" + "0OIl"])
def test_malformed_cids_are_rejected_with_upstream_wording(text: str) -> None:
    with pytest.raises(CidError, match="Cid"):
        Cid.parse(text)


def test_chunking_pads_the_last_block_and_is_independent_of_arrival_sizes(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * BLOCK_SIZE + 5)
    cids = {str(upload(RepoStore(tmp_path / str(n), 1 << 30), data, chunk=n)) for n in (1000, 65536, 70000)}
    assert len(cids) == 1
    store = RepoStore(tmp_path / "check", 1 << 30)
    manifest = store.manifest(upload(store, data))
    assert manifest.dataset_size == len(data) and manifest.blocks_count == 4
    last = store.block_at(manifest.tree_cid, 3)
    assert len(last) == BLOCK_SIZE and last[5:] == bytes(BLOCK_SIZE - 5)


def test_filename_and_mimetype_change_the_dataset_cid_not_the_tree(tmp_path: Path) -> None:
    store = RepoStore(tmp_path, 1 << 30)
    plain = store.manifest(upload(store, b"same bytes"))
    named_cid = upload(store, b"same bytes", "a.txt", "text/plain")
    assert named_cid != plain.cid()
    assert store.manifest(named_cid).tree_cid == plain.tree_cid


def test_manifest_codec_round_trip_and_field_order() -> None:
    tree = Cid(ROOT_CODEC, hashlib.sha256(b"t").digest())
    for manifest in (
        Manifest(tree, 12345),
        Manifest(tree, 1, filename="archive-data.bin", mimetype="application/octet-stream"),
        Manifest(tree, 10**12, filename="ünïcode.txt"),
    ):
        encoded = manifest.encode()
        assert Manifest.decode(encoded) == manifest
        header = encoded[2:] if encoded[1] < 0x80 else encoded[3:]
        # field 1 (treeCid, length-delimited) comes first, then 2 blockSize, 3 datasetSize ... 6 version = 2
        assert header[0] == 0x0A
        assert b"\x30\x02" in header, "version must be encoded as 2 (CidVersion ordinal), not 1"


def test_manifest_decode_rejects_garbage() -> None:
    for garbage in (b"", b"\x0a\x05abc", b"\xff\xff\xff"):
        with pytest.raises(DecodeError):
            Manifest.decode(garbage)


def test_varint_round_trip() -> None:
    for value in (0, 1, 127, 128, 300, 0xCD01, 2**32, 2**63 - 1):
        encoded = encode_varint(value)
        assert decode_varint(encoded) == (value, len(encoded))
    assert encode_varint(0xCD02) == bytes([0x82, 0x9A, 0x03])


@pytest.mark.parametrize("nleaves", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_merkle_proofs_verify_for_every_leaf_and_fail_when_tampered(nleaves: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(nleaves)]
    layers = merkle.layers(leaves)
    root = layers[-1][0]
    for index, leaf in enumerate(leaves):
        proof = merkle.prove(layers, index)
        assert merkle.verify(proof, leaf, root)
        assert merkle.verify(merkle.Proof.decode(proof.encode()), leaf, root)
        assert not merkle.verify(proof, hashlib.sha256(b"other").digest(), root)
        if nleaves > 1:
            assert not merkle.verify(merkle.Proof((index + 1) % nleaves, nleaves, proof.path), leaf, root)


def test_a_proof_decodes_the_same_from_any_field_order() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    proof = merkle.prove(merkle.layers(leaves), 3)
    path = b"".join(bytes_field(4, bytes_field(1, node)) for node in proof.path)
    reordered = path + varint_field(3, proof.nleaves) + varint_field(2, proof.index)  # no mcodec
    assert merkle.Proof.decode(proof.encode()) == proof == merkle.Proof.decode(reordered)
    assert merkle.Proof.decode(memoryview(proof.encode())) == proof


def test_merkle_single_leaf_still_hashes_once() -> None:
    leaf = hashlib.sha256(b"only").digest()
    assert merkle.root([leaf]) == hashlib.sha256(leaf + bytes(32) + b"\x03").digest()


def test_merkle_empty_is_an_error() -> None:
    with pytest.raises(ValueError, match="Empty leaves"):
        merkle.root([])


@pytest.mark.parametrize("nleaves", [1, 2, 3, 5, 8, 13])
def test_checked_nodes_agree_with_full_proofs_in_any_order_and_serve_proofs_of_what_they_saw(
    nleaves: int,
) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(nleaves)]
    layers = merkle.layers(leaves)
    nodes = merkle.CheckedNodes(layers[-1][0], nleaves)
    assert merkle.height(nleaves) == len(layers) - 1
    for index in [*range(0, nleaves, 2), *range(1, nleaves, 2)]:  # evens first: odds are then known
        shown_before = nodes.leaf(index) is not None
        assert shown_before == (index % 2 == 1), "an odd leaf is its even neighbour's proof sibling"
        assert (nodes.prove(index) is not None) == shown_before
        assert nodes.check(merkle.prove(layers, index), leaves[index])
        assert nodes.prove(index) == merkle.prove(layers, index)


def test_checked_nodes_reject_a_wrong_leaf_or_proof_even_below_a_known_node_and_learn_nothing() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    layers = merkle.layers(leaves)
    nodes = merkle.CheckedNodes(layers[-1][0], 8)
    assert nodes.check(merkle.prove(layers, 0), leaves[0])
    learned = dict(nodes.nodes)
    assert nodes.leaf(1) == leaves[1], "a checked leaf's sibling is known"
    other = hashlib.sha256(b"other").digest()
    assert not nodes.check(merkle.prove(layers, 1), other), "a known leaf must match"
    bad_path = merkle.prove(layers, 2)._replace(path=(other, *merkle.prove(layers, 2).path[1:]))
    assert not nodes.check(bad_path, leaves[2]), "stops at a known node, which must match"
    proof = merkle.prove(layers, 4)
    assert not nodes.check(proof._replace(nleaves=9), leaves[4])
    assert not nodes.check(proof._replace(path=proof.path[:-1]), leaves[4])
    assert nodes.nodes == learned, "a failed check keeps nothing"
    assert nodes.prove(5) is None, "no proof showed leaf 5"
