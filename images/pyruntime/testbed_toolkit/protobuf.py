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


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def encode_varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
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


def decode_varint(data: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
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


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes | memoryview]]:
    """Yield (field number, wire type, value) for varint and length-delimited fields.

    Length-delimited values are slices of `data`: pass a memoryview to decode without copying
    (a 64 KiB block inside a 1.3 MB message), bytes to get bytes."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = decode_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == LENGTH_DELIMITED:
            length, pos = decode_varint(data, pos)
            if pos + length > end:
                raise DecodeError(f"field {number} runs past the end")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        else:
            raise DecodeError(f"unsupported wire type {wire_type} for field {number}")
