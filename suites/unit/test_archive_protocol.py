"""The reference status peer's archive protocol pieces: protobufs, archive IDs, windows, chunks."""

from __future__ import annotations

import pytest
from Crypto.Hash import keccak
from statusref.archive import chunks, windows
from statusref.protobufs import ArchiveIndex, ArchiveMetadata, IndexEntry, WakuMessage, WakuMessageArchive
from testbed_toolkit.protobuf import DecodeError

METADATA = ArchiveMetadata(
    start=1_700_000_000, end=1_700_000_010, topics=(b"0xcommunity", b"0xcommunity-general")
)


def message(payload: bytes, sig: bytes = b"s" * 65) -> WakuMessage:
    return WakuMessage(
        sig=sig, timestamp=1_700_000_001 * 10**9, topic=b"0xcommunity-general", payload=payload, hash=b"h"
    )


def test_archive_round_trips_with_status_go_field_numbers() -> None:
    archive = WakuMessageArchive(METADATA, (message(b"one"), message(b"two")))
    encoded = archive.encode()

    assert WakuMessageArchive.decode(encoded) == archive
    # version(1)=1, metadata(2) length-delimited first: the bytes status-go's proto writes
    assert encoded[:2] == bytes([0x08, 0x01]) and encoded[2] == 0x12
    assert message(b"x").encode().startswith(bytes([0x0A, 65])), "sig is field 1, bytes"


def test_the_archive_id_is_the_keccak_of_the_marshalled_entry() -> None:
    entry = IndexEntry(METADATA, "zDvZRwzmExampleCid")
    assert entry.archive_id == "0x" + keccak.new(digest_bits=256, data=entry.encode()).hexdigest()
    assert (
        entry.encode()
        == bytes([0x08, 0x01, 0x12, len(METADATA.encode())])
        + METADATA.encode()
        + bytes([0x1A, len("zDvZRwzmExampleCid")])
        + b"zDvZRwzmExampleCid"
    )


def test_index_is_a_map_of_archive_ids_and_sorts_newest_first() -> None:
    index = ArchiveIndex()
    old = IndexEntry(METADATA, "cid-old")
    new = IndexEntry(ArchiveMetadata(1_700_000_010, 1_700_000_020, METADATA.topics), "cid-new")
    index.add(old)
    index.add(new)

    decoded = ArchiveIndex.decode(index.encode())
    assert decoded.archives == {old.archive_id: old, new.archive_id: new}
    assert [entry.cid for _, entry in decoded.newest_first()] == ["cid-new", "cid-old"]


@pytest.mark.parametrize("garbage", [b"not an archive index " * 5, b"", b"\x0a\x02\x08\x01"])
def test_bytes_that_are_not_an_index_are_refused(garbage: bytes) -> None:
    with pytest.raises((DecodeError, ValueError, KeyError)):
        ArchiveIndex.decode(garbage)


def test_windows_cover_the_range_in_interval_steps() -> None:
    assert windows(100, 125, 10) == [(100, 110), (110, 120), (120, 125)]
    assert windows(100, 100, 10) == []


def test_chunks_stay_under_the_limit_and_drop_oversized_messages() -> None:
    small = [message(b"a" * 35, sig=b"s" * 65) for _ in range(5)]  # 100 bytes each
    huge = message(b"b" * 1000)

    cut = chunks([*small[:2], huge, *small[2:]], limit=250)

    assert [len(chunk) for chunk in cut] == [2, 2, 1]
    assert all(m is not huge for chunk in cut for m in chunk)
