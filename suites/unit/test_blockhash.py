"""blockhash: the reference node's batch SHA-256 (images/codex-ref/blockhash) agrees with hashlib."""

from __future__ import annotations

import hashlib
import os

import blockhash
import pytest


def test_digests_match_hashlib_for_every_kind_of_buffer() -> None:
    frame = os.urandom(3 * 65536 + 5)
    blocks = [
        frame[:65536],  # bytes
        memoryview(frame)[65536 + 5 : 2 * 65536 + 5],  # a view into a frame, as decoded messages hold
        bytearray(b"odd length, under hashlib's 2 KiB GIL threshold"),
        b"",
    ]
    assert blockhash.sha256_many(blocks) == [hashlib.sha256(block).digest() for block in blocks]
    assert blockhash.sha256_many(()) == []


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [(42, "sequence of buffers"), ([b"ok", "text"], "bytes-like object")],
)
def test_what_is_not_a_sequence_of_buffers_is_a_type_error(blocks: object, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        blockhash.sha256_many(blocks)


def test_a_failed_call_lets_go_of_the_buffers_it_had_taken() -> None:
    growing = bytearray(b"resizable only when no buffer export is outstanding")
    with pytest.raises(TypeError):
        blockhash.sha256_many([growing, None])
    growing += b"!"  # BufferError if the first buffer were still held
    assert blockhash.sha256_many([growing]) == [hashlib.sha256(growing).digest()]
