"""Codex manifest block: protobuf {1: Header}, fields emitted in upstream's order (nim-codex
`codex/manifest/coders.nim`, bd360322)."""

from __future__ import annotations

from dataclasses import dataclass

from testbed_toolkit.cid import BLOCK_CODEC, MANIFEST_CODEC, SHA2_256, Cid, CidError
from testbed_toolkit.protobuf import DecodeError, bytes_field, iter_fields, varint_field

BLOCK_SIZE = 64 * 1024
# nim-libp2p's CidVersion enum ordinal for CIDv1 is 2; upstream writes that, not 1.
MANIFEST_VERSION = 2


@dataclass(frozen=True)
class Manifest:
    tree_cid: Cid
    dataset_size: int
    block_size: int = BLOCK_SIZE
    filename: str | None = None
    mimetype: str | None = None

    @property
    def blocks_count(self) -> int:
        return -(-self.dataset_size // self.block_size)

    def encode(self) -> bytes:
        header = (
            bytes_field(1, self.tree_cid.to_bytes())
            + varint_field(2, self.block_size)
            + varint_field(3, self.dataset_size)
            + varint_field(4, BLOCK_CODEC)
            + varint_field(5, SHA2_256)
            + varint_field(6, MANIFEST_VERSION)
        )
        if self.filename is not None:
            header += bytes_field(8, self.filename.encode())
        if self.mimetype is not None:
            header += bytes_field(9, self.mimetype.encode())
        return bytes_field(1, header)

    def cid(self) -> Cid:
        return Cid.of_data(MANIFEST_CODEC, self.encode())

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Manifest:
        try:
            header = next((v for n, _, v in iter_fields(bytes(data)) if n == 1), None)
            if not isinstance(header, bytes):
                raise DecodeError("manifest has no header")
            fields = {n: v for n, _, v in iter_fields(header)}
            if 1 not in fields or 3 not in fields:
                raise DecodeError("manifest header lacks treeCid or datasetSize")
            return cls(
                tree_cid=Cid.from_bytes(fields[1]),  # type: ignore[arg-type]
                dataset_size=int(fields[3]),  # type: ignore[arg-type]
                block_size=int(fields.get(2, BLOCK_SIZE)),  # type: ignore[arg-type]
                filename=fields[8].decode() if 8 in fields else None,  # type: ignore[union-attr]
                mimetype=fields[9].decode() if 9 in fields else None,  # type: ignore[union-attr]
            )
        except (DecodeError, CidError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not a Codex manifest: {exc}") from exc

    def data_item(self, cid: Cid) -> dict:
        """The REST `DataItem` JSON."""
        return {
            "cid": str(cid),
            "manifest": {
                "treeCid": str(self.tree_cid),
                "datasetSize": self.dataset_size,
                "blockSize": self.block_size,
                "filename": self.filename,
                "mimetype": self.mimetype,
                "protected": False,
            },
        }
