"""Datasets: chunk an upload into 64 KiB blocks, build the tree and manifest; stream a dataset back."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator

from testbed_toolkit import merkle
from testbed_toolkit.cid import BLOCK_CODEC, ROOT_CODEC, Cid

from codexref.manifest import BLOCK_SIZE, Manifest
from codexref.store import RepoStore

UPLOAD_BATCH = 16  # blocks per store transaction


class EmptyDatasetError(ValueError):
    pass


async def store_stream(
    store: RepoStore, chunks: AsyncIterator[bytes], filename: str | None, mimetype: str | None
) -> Cid:
    """Store an upload as it arrives; the last block is zero-padded to 64 KiB, like upstream's chunker."""
    leaves: list[bytes] = []
    batch: list[tuple[Cid, bytes]] = []
    pending = bytearray()
    size = 0

    def put_block(data: bytes) -> None:
        digest = hashlib.sha256(data).digest()
        batch.append((Cid(BLOCK_CODEC, digest), data))
        leaves.append(digest)
        if len(batch) >= UPLOAD_BATCH:
            store.put_many(batch)
            batch.clear()

    async for chunk in chunks:
        size += len(chunk)
        pending += chunk
        while len(pending) >= BLOCK_SIZE:
            put_block(bytes(pending[:BLOCK_SIZE]))
            del pending[:BLOCK_SIZE]
    if pending:
        put_block(bytes(pending).ljust(BLOCK_SIZE, b"\0"))
    store.put_many(batch)
    if not leaves:
        raise EmptyDatasetError("Empty leaves")
    tree_cid = Cid(ROOT_CODEC, merkle.root(leaves))
    store.put_tree(tree_cid, leaves)
    return store.put_manifest(Manifest(tree_cid, size, BLOCK_SIZE, filename, mimetype))


def read_local(store: RepoStore, manifest: Manifest) -> Iterator[bytes]:
    """The dataset's bytes block by block, trimmed to datasetSize.

    Raises BlockNotFoundError when a block is not in the local store."""
    for index in range(manifest.blocks_count):
        yield trim(manifest, index, store.block_at(manifest.tree_cid, index))


def trim(manifest: Manifest, index: int, block: bytes) -> bytes:
    """A block as part of the dataset: the last one loses its zero padding."""
    return block[: max(0, min(len(block), manifest.dataset_size - index * manifest.block_size))]
