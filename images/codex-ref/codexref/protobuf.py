"""Minimal protobuf wire format: varints and fields, written by hand for byte-exact control.

Codex's Nim encoders decide field order and which zero values are emitted; matching them
byte for byte (CIDs are hashes of these bytes) is easier with explicit writers than with a
generated protobuf class, which would apply proto3 presence rules of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT = 0
LENGTH_DELIMITED = 2


class DecodeError(ValueError):
    pass


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Return (value, position after the varint)."""
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 64 bits")
    raise DecodeError("truncated varint")


def varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def bytes_field(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(value)) + value


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for varint and length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = decode_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == LENGTH_DELIMITED:
            length, pos = decode_varint(data, pos)
            if pos + length > len(data):
                raise DecodeError(f"field {number} runs past the end")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        else:
            raise DecodeError(f"unsupported wire type {wire_type} for field {number}")
