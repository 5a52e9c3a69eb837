"""The archive protobufs with status-go's field numbers (protocol/protobuf/communities.proto).

What travels through Codex is exactly these bytes, so a real status-backend and this peer can read
each other's archives and indexes. The index entry is the Codex one: {version=1, metadata=2, cid=3}.
Field table: docs/status-ref.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from Crypto.Hash import keccak
from testbed_toolkit.protobuf import bytes_field, iter_fields, varint_field

VERSION = 1


@dataclass(frozen=True)
class WakuMessage:
    sig: bytes
    timestamp: int  # nanoseconds, as Waku
    topic: bytes
    payload: bytes
    hash: bytes = b""

    def encode(self) -> bytes:
        return (
            bytes_field(1, self.sig)
            + varint_field(2, self.timestamp)
            + bytes_field(3, self.topic)
            + bytes_field(4, self.payload)
            + (bytes_field(6, self.hash) if self.hash else b"")
        )

    @classmethod
    def decode(cls, data: bytes) -> WakuMessage:
        values: dict[int, object] = {n: v for n, _, v in iter_fields(data)}
        return cls(
            sig=values.get(1, b""),  # type: ignore[arg-type]
            timestamp=values.get(2, 0),  # type: ignore[arg-type]
            topic=values.get(3, b""),  # type: ignore[arg-type]
            payload=values.get(4, b""),  # type: ignore[arg-type]
            hash=values.get(6, b""),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ArchiveMetadata:
    """WakuMessageArchiveMetadata: from/to in unix seconds, every content topic of the community."""

    start: int
    end: int
    topics: tuple[bytes, ...]
    version: int = VERSION

    def encode(self) -> bytes:
        out = varint_field(1, self.version) + varint_field(2, self.start) + varint_field(3, self.end)
        return out + b"".join(bytes_field(4, topic) for topic in self.topics)

    @classmethod
    def decode(cls, data: bytes) -> ArchiveMetadata:
        fields = list(iter_fields(data))
        single = {n: v for n, _, v in fields}
        topics = tuple(v for n, _, v in fields if n == 4)
        return cls(start=single.get(2, 0), end=single.get(3, 0), topics=topics, version=single.get(1, 0))  # type: ignore[arg-type]


@dataclass(frozen=True)
class WakuMessageArchive:
    metadata: ArchiveMetadata
    messages: tuple[WakuMessage, ...]
    version: int = VERSION

    def encode(self) -> bytes:
        out = varint_field(1, self.version) + bytes_field(2, self.metadata.encode())
        return out + b"".join(bytes_field(3, m.encode()) for m in self.messages)

    @classmethod
    def decode(cls, data: bytes) -> WakuMessageArchive:
        fields = list(iter_fields(data))
        metadata = next((v for n, _, v in fields if n == 2), None)
        if metadata is None:
            raise ValueError("not a WakuMessageArchive: no metadata (field 2)")
        messages = tuple(WakuMessage.decode(v) for n, _, v in fields if n == 3)  # type: ignore[arg-type]
        return cls(ArchiveMetadata.decode(metadata), messages)  # type: ignore[arg-type]


@dataclass(frozen=True)
class IndexEntry:
    """CodexWakuMessageArchiveIndexMetadata: where one archive is (its CID) and what it covers."""

    metadata: ArchiveMetadata
    cid: str
    version: int = VERSION

    def encode(self) -> bytes:
        return (
            varint_field(1, self.version)
            + bytes_field(2, self.metadata.encode())
            + bytes_field(3, self.cid.encode())
        )

    @classmethod
    def decode(cls, data: bytes) -> IndexEntry:
        values = {n: v for n, _, v in iter_fields(data)}
        if 2 not in values or 3 not in values:
            raise ValueError("index entry without metadata (2) or cid (3)")
        return cls(ArchiveMetadata.decode(values[2]), values[3].decode(), values.get(1, 0))  # type: ignore[union-attr,arg-type]

    @property
    def archive_id(self) -> str:
        """The archive ID: Keccak-256 of the marshalled entry, 0x-hex."""
        return "0x" + keccak.new(digest_bits=256, data=self.encode()).hexdigest()


@dataclass
class ArchiveIndex:
    """CodexWakuMessageArchiveIndex: archives(1) map<string, entry>, a map being repeated
    {key=1, value=2} pairs on the wire."""

    archives: dict[str, IndexEntry] = field(default_factory=dict)

    def add(self, entry: IndexEntry) -> str:
        self.archives[entry.archive_id] = entry
        return entry.archive_id

    def encode(self) -> bytes:
        pairs = (
            bytes_field(1, bytes_field(1, key.encode()) + bytes_field(2, entry.encode()))
            for key, entry in sorted(self.archives.items())
        )
        return b"".join(pairs)

    @classmethod
    def decode(cls, data: bytes) -> ArchiveIndex:
        index = cls()
        for number, _, pair in iter_fields(data):
            if number != 1:
                continue
            values = {n: v for n, _, v in iter_fields(pair)}  # type: ignore[arg-type]
            index.archives[values[1].decode()] = IndexEntry.decode(values[2])  # type: ignore[union-attr,arg-type]
        if not index.archives:
            raise ValueError("not an archive index: no entries")
        return index

    def newest_first(self) -> list[tuple[str, IndexEntry]]:
        return sorted(self.archives.items(), key=lambda item: item[1].metadata.start, reverse=True)
