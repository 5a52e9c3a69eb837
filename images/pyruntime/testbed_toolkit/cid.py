"""CIDv1 with Codex's private multicodecs, rendered base58btc (`z...`)."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import base58

from testbed_toolkit.protobuf import DecodeError, decode_varint, encode_varint

MANIFEST_CODEC = 0xCD01
BLOCK_CODEC = 0xCD02
ROOT_CODEC = 0xCD03
SHA2_256 = 0x12
DIGEST_LEN = 32
CID_V1 = 0x01
# Ours are 52 characters; base58 decoding is quadratic (16 KiB of path: 0.2 s of the event loop).
MAX_TEXT = 128


class CidError(ValueError):
    """Carries the text upstream answers with (400 body)."""


class Cid(NamedTuple):  # a tuple: hashed and compared in C (dict keys on the per-block path)
    codec: int
    digest: bytes

    def to_bytes(self) -> bytes:
        return (
            encode_varint(CID_V1)
            + encode_varint(self.codec)
            + encode_varint(SHA2_256)
            + encode_varint(len(self.digest))
            + self.digest
        )

    def multihash(self) -> bytes:
        """The CID's multihash: what Kad-DHT keys a provider record by (nim-libp2p's `toKey`)."""
        return encode_varint(SHA2_256) + encode_varint(len(self.digest)) + self.digest

    def __str__(self) -> str:
        return "z" + base58.b58encode(self.to_bytes()).decode()

    @classmethod
    def of_data(cls, codec: int, data: bytes) -> Cid:
        return cls(codec, hashlib.sha256(data).digest())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Cid:
        try:
            version, pos = decode_varint(raw)
            codec, pos = decode_varint(raw, pos)
            hash_code, pos = decode_varint(raw, pos)
            length, pos = decode_varint(raw, pos)
        except DecodeError as exc:
            raise CidError("Incorrect Cid") from exc
        if version != CID_V1:
            raise CidError("Unsupported Cid")
        if hash_code != SHA2_256 or length != DIGEST_LEN or len(raw) - pos != DIGEST_LEN:
            raise CidError("Incorrect Cid")
        return cls(codec, raw[pos:])

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse a base58btc CIDv1 (`z...`); anything else is an error with upstream's wording."""
        if not text.startswith("z") or not 2 <= len(text) <= MAX_TEXT:
            raise CidError("Incorrect Cid")
        try:
            raw = base58.b58decode(text[1:])
        except ValueError as exc:
            raise CidError("Incorrect Cid") from exc
        return cls.from_bytes(raw)
