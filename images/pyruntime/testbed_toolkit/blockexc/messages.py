"""BlockExchange wire messages: the actual encoding of nim-codex's
`codex/blockexchange/protobuf/message.nim` (bd360322), not the stale `message.proto`.

Encoding follows the Nim encoder: fields are written in number order; booleans and zero
integers that matter are written explicitly, and decoders accept messages with or without them.
Frames on the stream are unsigned-varint length-prefixed (`writeLp`/`readLp`, 100 MiB max).
Field numbers: docs/reference-node.md, "Wire formats".

The per-block types are NamedTuples, not dataclasses: a download creates, hashes and compares
several per block, and tuples do that in C. Decoding a memoryview keeps a block's data a view
into the received frame instead of copying it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from testbed_toolkit.cid import Cid
from testbed_toolkit.protobuf import (
    LENGTH_DELIMITED,
    DecodeError,
    bytes_field,
    encode_varint,
    iter_fields,
    varint_field,
)

MAX_MESSAGE_BYTES = 100 * 1024 * 1024
WANT_BLOCK = 0
WANT_HAVE = 1
PRESENCE_HAVE = 0
PRESENCE_DONT_HAVE = 1


class BlockAddress(NamedTuple):
    """A dataset block `(treeCid, index)` (leaf) or a standalone block / manifest by `cid`."""

    leaf: bool
    tree_cid: bytes = b""
    index: int = 0
    cid: bytes = b""

    @classmethod
    def of_leaf(cls, tree_cid: bytes, index: int) -> BlockAddress:
        return cls(True, tree_cid=tree_cid, index=index)

    @classmethod
    def of_cid(cls, cid: bytes) -> BlockAddress:
        return cls(False, cid=cid)

    def __str__(self) -> str:  # as upstream's `$`: CIDs as text, not bytes (error answers carry it)
        if self.leaf:
            return f"treeCid: {Cid.from_bytes(self.tree_cid)}, index: {self.index}"
        return f"cid: {Cid.from_bytes(self.cid)}"

    def encode(self) -> bytes:
        out = varint_field(1, int(self.leaf))
        if self.leaf:
            return out + bytes_field(2, self.tree_cid) + varint_field(3, self.index)
        return out + bytes_field(4, self.cid)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> BlockAddress:
        f = _fields(data)
        leaf = bool(f.get(1, 0))
        if leaf:
            if 2 not in f:
                raise DecodeError("leaf BlockAddress without treeCid")
            return cls(True, tree_cid=_as_bytes(f[2]), index=f.get(3, 0))
        if 4 not in f:
            raise DecodeError("BlockAddress without cid")
        return cls(False, cid=_as_bytes(f[4]))


class WantEntry(NamedTuple):
    address: BlockAddress
    want_type: int = WANT_BLOCK
    cancel: bool = False
    send_dont_have: bool = False
    priority: int = 0

    def encode(self) -> bytes:
        return (
            bytes_field(1, self.address.encode())
            + varint_field(2, self.priority)
            + varint_field(3, int(self.cancel))
            + varint_field(4, self.want_type)
            + varint_field(5, int(self.send_dont_have))
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> WantEntry:
        f = _fields(data)
        if 1 not in f:
            raise DecodeError("want entry without address")
        want_type = f.get(4, WANT_BLOCK)
        if want_type not in (WANT_BLOCK, WANT_HAVE):
            raise DecodeError(f"unknown wantType {want_type}")
        return cls(
            BlockAddress.decode(_as_buffer(f[1])),
            want_type=want_type,
            cancel=bool(f.get(3, 0)),
            send_dont_have=bool(f.get(5, 0)),
            priority=f.get(2, 0),
        )


@dataclass(frozen=True)
class Wantlist:
    entries: tuple[WantEntry, ...] = ()
    full: bool = False

    def encode(self) -> bytes:
        return b"".join(bytes_field(1, e.encode()) for e in self.entries) + varint_field(2, int(self.full))

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Wantlist:
        entries, full = [], False
        for number, _, value in iter_fields(data):
            if number == 1:
                entries.append(WantEntry.decode(_as_buffer(value)))
            elif number == 2:
                full = bool(value)
        return cls(tuple(entries), full)


class BlockDelivery(NamedTuple):
    cid: bytes
    data: bytes | memoryview  # a view into the received frame when decoded from a memoryview
    address: BlockAddress
    proof: bytes = b""  # CodexProof bytes; leaf deliveries only

    def parts(self) -> list[bytes]:
        """The encoding in pieces, so the 64 KiB of data is copied once, into the frame."""
        head = bytes_field(1, self.cid) + _field_header(2, len(self.data))
        tail = bytes_field(3, self.address.encode()) + (
            bytes_field(4, self.proof) if self.address.leaf else b""
        )
        return [head, self.data, tail]

    def encode(self) -> bytes:
        return b"".join(self.parts())

    @classmethod
    def decode(cls, data: bytes | memoryview) -> BlockDelivery:
        f = _fields(data)
        if 1 not in f or 3 not in f:
            raise DecodeError("block delivery without cid or address")
        return cls(
            _as_bytes(f[1]),
            _as_buffer(f.get(2, b"")),
            BlockAddress.decode(_as_buffer(f[3])),
            _as_bytes(f.get(4, b"")),
        )


class BlockPresence(NamedTuple):
    address: BlockAddress
    type: int = PRESENCE_HAVE
    price: bytes = bytes(32)  # UInt256 big-endian, as upstream writes it; always zero here

    def encode(self) -> bytes:
        return bytes_field(1, self.address.encode()) + varint_field(2, self.type) + bytes_field(3, self.price)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> BlockPresence:
        f = _fields(data)
        if 1 not in f:
            raise DecodeError("block presence without address")
        return cls(BlockAddress.decode(_as_buffer(f[1])), f.get(2, PRESENCE_HAVE), _as_bytes(f.get(3, b"")))


@dataclass(frozen=True)
class Message:
    wantlist: Wantlist = field(default_factory=Wantlist)
    payload: tuple[BlockDelivery, ...] = ()
    block_presences: tuple[BlockPresence, ...] = ()
    pending_bytes: int = 0

    def parts(self) -> list[bytes]:
        out = [bytes_field(1, self.wantlist.encode())]
        for delivery in self.payload:
            pieces = delivery.parts()
            out += [_field_header(3, sum(len(p) for p in pieces)), *pieces]
        out += [bytes_field(4, p.encode()) for p in self.block_presences]
        # 6 account {1 address} and 7 payment {1 update} (Nitro micropayments) are unused by
        # default; upstream still writes both, each with an empty field 1.
        empty = bytes_field(1, b"")
        out += [varint_field(5, self.pending_bytes), bytes_field(6, empty), bytes_field(7, empty)]
        return out

    def encode(self) -> bytes:
        return b"".join(self.parts())

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Message:
        """Decode a message body; block data stays a view into `data` (no copy)."""
        wantlist, payload, presences, pending = Wantlist(), [], [], 0
        for number, _, value in iter_fields(memoryview(data)):
            if number == 1:
                wantlist = Wantlist.decode(_as_buffer(value))
            elif number == 3:
                payload.append(BlockDelivery.decode(_as_buffer(value)))
            elif number == 4:
                presences.append(BlockPresence.decode(_as_buffer(value)))
            elif number == 5:
                pending = int(value)  # type: ignore[arg-type]
        return cls(wantlist, tuple(payload), tuple(presences), pending)

    def framed(self) -> bytes:
        parts = self.parts()
        return b"".join([encode_varint(sum(len(p) for p in parts)), *parts])


def _field_header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field whose body follows separately."""
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(length)


def _as_buffer(value: int | bytes | memoryview) -> bytes | memoryview:
    if isinstance(value, int):
        raise DecodeError("expected a length-delimited field")
    return value


def _as_bytes(value: int | bytes | memoryview) -> bytes:
    """Small fields (CIDs, proofs) become bytes: they are hashed, compared and kept."""
    return bytes(_as_buffer(value))


def _fields(data: bytes | memoryview) -> dict:
    """Last value per field number (the messages here have no repeated fields)."""
    return {number: value for number, _, value in iter_fields(data)}
