"""BlockExchange wire codec (docs/reference-node.md, "Wire formats": the BlockExchange frame and
message rows): hand-assembled bytes and round trips."""

from __future__ import annotations

import hashlib

import pytest
from testbed_toolkit.blockexc.messages import (
    PRESENCE_DONT_HAVE,
    WANT_HAVE,
    BlockAddress,
    BlockDelivery,
    BlockPresence,
    Message,
    WantEntry,
    Wantlist,
)
from testbed_toolkit.cid import BLOCK_CODEC, ROOT_CODEC, Cid
from testbed_toolkit.protobuf import DecodeError, encode_varint

TREE = Cid(ROOT_CODEC, hashlib.sha256(b"tree").digest()).to_bytes()  # 36 bytes
BLOCK = Cid(BLOCK_CODEC, hashlib.sha256(b"block").digest()).to_bytes()
LEAF = BlockAddress.of_leaf(TREE, 300)
LEAF_BYTES = b"\x08\x01" + b"\x12" + bytes([len(TREE)]) + TREE + b"\x18\xac\x02"  # index 300 = ac 02


def test_block_address_bytes() -> None:
    assert LEAF.encode() == LEAF_BYTES
    assert BlockAddress.of_cid(BLOCK).encode() == b"\x08\x00" + b"\x22" + bytes([len(BLOCK)]) + BLOCK


def test_an_address_reads_as_text_cids_as_upstream_prints_it() -> None:
    assert str(LEAF) == f"treeCid: {Cid.from_bytes(TREE)}, index: 300"
    assert str(BlockAddress.of_cid(BLOCK)) == f"cid: {Cid.from_bytes(BLOCK)}"


@pytest.mark.parametrize(
    "encoded",
    [
        LEAF_BYTES,
        b"\x18\xac\x02" + LEAF_BYTES[: -len(b"\x18\xac\x02")],  # index first
        LEAF_BYTES + b"\x18\xac\x02",  # index twice: the last one counts
    ],
)
def test_a_leaf_address_decodes_the_same_whatever_the_field_order(encoded: bytes) -> None:
    assert BlockAddress.decode(encoded) == LEAF
    assert BlockAddress.decode(memoryview(encoded)) == LEAF


def test_want_entry_bytes_write_every_field_like_the_nim_encoder() -> None:
    entry = WantEntry(LEAF, want_type=WANT_HAVE, send_dont_have=True)
    expected = (
        b"\x0a"
        + bytes([len(LEAF_BYTES)])
        + LEAF_BYTES
        + b"\x10\x00"
        + b"\x18\x00"
        + b"\x20\x01"
        + b"\x28\x01"
    )
    assert entry.encode() == expected


def test_wantlist_bytes() -> None:
    entry = WantEntry(LEAF, cancel=True)
    encoded_entry = entry.encode()
    wantlist = Wantlist((entry,), full=True)
    assert wantlist.encode() == b"\x0a" + encode_varint(len(encoded_entry)) + encoded_entry + b"\x10\x01"


def test_block_presence_bytes_carry_a_32_byte_zero_price() -> None:
    presence = BlockPresence(LEAF, PRESENCE_DONT_HAVE)
    expected = b"\x0a" + bytes([len(LEAF_BYTES)]) + LEAF_BYTES + b"\x10\x01" + b"\x1a\x20" + bytes(32)
    assert presence.encode() == expected


def test_block_delivery_bytes_include_the_proof_only_for_leaves() -> None:
    data, proof = b"\x01\x02\x03", b"\x08\x12\x10\xac\x02"
    leaf = BlockDelivery(BLOCK, data, LEAF, proof)
    expected = (
        b"\x0a" + bytes([len(BLOCK)]) + BLOCK
        + b"\x12\x03" + data
        + b"\x1a" + bytes([len(LEAF_BYTES)]) + LEAF_BYTES
        + b"\x22\x05" + proof
    )  # fmt: skip
    assert leaf.encode() == expected
    standalone = BlockDelivery(BLOCK, data, BlockAddress.of_cid(BLOCK), proof)
    assert b"\x22\x05" + proof not in standalone.encode()


def test_empty_message_bytes() -> None:
    # wantlist {full: 0}, pendingBytes 0, account {address: ""}, payment {update: ""}
    assert Message().encode() == b"\x0a\x02\x10\x00" + b"\x28\x00" + b"\x32\x02\x0a\x00" + b"\x3a\x02\x0a\x00"


def test_frame_is_varint_length_prefixed() -> None:
    message = Message(block_presences=(BlockPresence(LEAF),))
    body = message.encode()
    assert message.framed() == encode_varint(len(body)) + body


def test_full_message_round_trip() -> None:
    message = Message(
        wantlist=Wantlist(
            (
                WantEntry(LEAF, WANT_HAVE, send_dont_have=True),
                WantEntry(BlockAddress.of_cid(BLOCK), cancel=True),
            ),
            full=True,
        ),
        payload=(BlockDelivery(BLOCK, b"x" * 65536, LEAF, b"proof"),),
        block_presences=(BlockPresence(LEAF), BlockPresence(BlockAddress.of_cid(BLOCK), PRESENCE_DONT_HAVE)),
        pending_bytes=123456,
    )
    assert Message.decode(message.encode()) == message


def test_decoder_accepts_messages_without_zero_fields() -> None:
    # a sparse encoder (e.g. proto3) omits zeros and empties: only a want-have entry remains
    address = b"\x08\x01\x12" + bytes([len(TREE)]) + TREE  # index 0 omitted
    entry = b"\x0a" + bytes([len(address)]) + address + b"\x20\x01"
    wantlist = b"\x0a" + bytes([len(entry)]) + entry
    decoded = Message.decode(b"\x0a" + bytes([len(wantlist)]) + wantlist)
    assert decoded.wantlist.entries == (WantEntry(BlockAddress.of_leaf(TREE, 0), WANT_HAVE),)
    assert decoded.payload == () and decoded.pending_bytes == 0


def _wantlist_with_entry(entry: bytes) -> bytes:
    wantlist = b"\x0a" + bytes([len(entry)]) + entry
    return b"\x0a" + bytes([len(wantlist)]) + wantlist


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (_wantlist_with_entry(b"\x20\x01"), "want entry without address"),
        (
            _wantlist_with_entry(b"\x0a" + bytes([len(LEAF_BYTES)]) + LEAF_BYTES + b"\x20\x07"),
            "unknown wantType 7",
        ),
        (b"\x1a\x02\x12\x00", "block delivery without cid or address"),
        (b"\x0a\x05\x0a\x03\x08\x01", "runs past the end"),
        (b"\x0b", "unsupported wire type 3"),
    ],
)
def test_malformed_messages_raise_decode_errors(garbage: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        Message.decode(garbage)
