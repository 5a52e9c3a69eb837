"""The block repo: blocks by CID (in a `--repo-kind` backend), Merkle leaves per tree, a manifest
index, and the quota.

Layout under the data dir (survives restarts): blocks in `repo/` (see blocks.py); `meta/trees/
<treeCid>` the 32-byte leaf digests in order (all-zero for leaves not downloaded yet);
`meta/manifests/<cid>` an empty marker per locally stored manifest. Quota usage counts stored
block bytes (dataset blocks padded to 64 KiB, deduplicated), as upstream's `/space` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed_toolkit.cid import BLOCK_CODEC, MANIFEST_CODEC, Cid

from codexref.blocks import REPO_KINDS, BlockBackend
from codexref.manifest import Manifest

DIGEST_LEN = 32
ZERO_DIGEST = bytes(DIGEST_LEN)
NOT_FOUND = "Block not found in local store"


class BlockNotFoundError(LookupError):
    pass


class QuotaNotEnoughError(RuntimeError):
    pass


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename, so a crash never leaves a torn file under its final name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Reservation:
    blocks: list[tuple[Cid, bytes]]
    size: int  # quota bytes held until commit


class RepoStore:
    def __init__(self, data_dir: Path, quota_max_bytes: int, repo_kind: str = "fs") -> None:
        self.trees_dir = data_dir / "meta" / "trees"
        self.manifests_dir = data_dir / "meta" / "manifests"
        for folder in (self.trees_dir, self.manifests_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.blocks: BlockBackend = REPO_KINDS[repo_kind](data_dir / "repo")
        self.quota_max_bytes = quota_max_bytes
        self.quota_reserved_bytes = 0
        self.total_blocks, self.quota_used_bytes = self.blocks.usage()
        # Leaf digests per tree, a write-through copy of trees_dir (32 bytes a block): serving and
        # receiving a block must not open the tree's file each time.
        self._leaves: dict[Cid, bytearray] = {}  # keyed by Cid: str() would base58-encode per block
        self.on_manifest: Callable[[Cid], None] | None = None  # a manifest was stored (to advertise)

    # -- blocks ---------------------------------------------------------------------------------
    def has(self, cid: Cid) -> bool:
        return self.blocks.has(cid)

    def get(self, cid: Cid) -> bytes:
        data = self.blocks.get(cid)
        if data is None:
            raise BlockNotFoundError(NOT_FOUND)
        return data

    def put(self, cid: Cid, data: bytes) -> None:
        self.put_many([(cid, data)])

    def put_many(self, blocks: list[tuple[Cid, bytes]]) -> None:
        """Store blocks on the calling thread; reserve/write/commit is the same, split so that
        the write can run off the event loop."""
        reservation = self.reserve(blocks)
        self.commit(reservation, self.write(blocks))

    def reserve(self, blocks: list[tuple[Cid, bytes]]) -> Reservation:
        """Hold quota for the blocks not stored yet; QuotaNotEnoughError (upstream's text) if
        they would not fit."""
        stored = self.blocks.stored([cid for cid, _ in blocks])  # one index query, not one a block
        size = sum(len(data) for cid, data in blocks if cid not in stored)
        if self.quota_used_bytes + self.quota_reserved_bytes + size > self.quota_max_bytes:
            raise QuotaNotEnoughError(
                f"Quota usage would exceed the limit. Used: {self.quota_used_bytes + size}, "
                f"reserved: {self.quota_reserved_bytes}, limit: {self.quota_max_bytes}"
            )
        self.quota_reserved_bytes += size
        return Reservation(blocks, size)

    def write(self, blocks: list[tuple[Cid, bytes]]) -> list[bool]:
        """Write reserved blocks; safe in a worker thread. True for each block that was new."""
        return self.blocks.write_many(blocks)

    def commit(self, reservation: Reservation, created: list[bool]) -> None:
        """Turn a reservation into usage for the blocks that were new."""
        new = [len(data) for (_, data), was_new in zip(reservation.blocks, created, strict=True) if was_new]
        self.quota_reserved_bytes -= reservation.size
        self.quota_used_bytes += sum(new)
        self.total_blocks += len(new)

    def _remove_block(self, cid: Cid) -> None:
        if size := self.blocks.delete(cid):
            self.quota_used_bytes -= size
            self.total_blocks -= 1

    # -- trees and manifests ----------------------------------------------------------------------
    def put_tree(self, tree_cid: Cid, leaves: list[bytes]) -> None:
        raw = b"".join(leaves)
        _atomic_write(self.trees_dir / str(tree_cid), raw)
        self._leaves[tree_cid] = bytearray(raw)

    def ensure_tree(self, tree_cid: Cid, nleaves: int) -> None:
        """Room for a tree being downloaded: unknown leaves are all-zero digests."""
        if self._tree(tree_cid) is None:
            self.put_tree(tree_cid, [ZERO_DIGEST] * nleaves)

    def put_leaves(self, tree_cid: Cid, digests: dict[int, bytes]) -> None:
        """Record downloaded leaves (index -> block digest) in memory and in the tree's file. The
        file gets the span from the lowest to the highest index in one write (a message's blocks
        are usually consecutive), taken from the memory copy, which matches the file elsewhere."""
        leaves = self._tree(tree_cid)
        if leaves is None:
            raise BlockNotFoundError(NOT_FOUND)
        if not digests:
            return
        for index, digest in digests.items():
            leaves[index * DIGEST_LEN : (index + 1) * DIGEST_LEN] = digest
        start, end = min(digests) * DIGEST_LEN, (max(digests) + 1) * DIGEST_LEN
        fd = os.open(self.trees_dir / str(tree_cid), os.O_WRONLY)
        try:
            os.pwrite(fd, leaves[start:end], start)
        finally:
            os.close(fd)

    def _tree(self, tree_cid: Cid) -> bytearray | None:
        leaves = self._leaves.get(tree_cid)
        if leaves is None:
            try:
                leaves = self._leaves[tree_cid] = bytearray((self.trees_dir / str(tree_cid)).read_bytes())
            except FileNotFoundError:
                return None
        return leaves

    def leaf_count(self, tree_cid: Cid) -> int | None:
        """How many leaves the tree has, or None when it is unknown here."""
        leaves = self._tree(tree_cid)
        return None if leaves is None else len(leaves) // DIGEST_LEN

    def leaf_digest(self, tree_cid: Cid, index: int) -> bytes | None:
        """The leaf's block digest, or None when the tree or that leaf is unknown here."""
        leaves = self._tree(tree_cid)
        if leaves is None:
            return None
        digest = bytes(leaves[index * DIGEST_LEN : (index + 1) * DIGEST_LEN])
        return digest if len(digest) == DIGEST_LEN and digest != ZERO_DIGEST else None

    def tree_leaves(self, tree_cid: Cid) -> list[bytes]:
        """All leaf digests in order; unknown leaves of a partial tree are all zeros."""
        raw = self._tree(tree_cid)
        if raw is None:
            raise BlockNotFoundError(NOT_FOUND)
        return [bytes(raw[i : i + DIGEST_LEN]) for i in range(0, len(raw), DIGEST_LEN)]

    def has_leaf(self, tree_cid: Cid, index: int) -> bool:
        digest = self.leaf_digest(tree_cid, index)
        return digest is not None and self.has(Cid(BLOCK_CODEC, digest))

    def block_at(self, tree_cid: Cid, index: int) -> bytes:
        digest = self.leaf_digest(tree_cid, index)
        if digest is None:
            raise BlockNotFoundError(NOT_FOUND)
        return self.get(Cid(BLOCK_CODEC, digest))

    def put_manifest(self, manifest: Manifest) -> Cid:
        cid = manifest.cid()
        self.put(cid, manifest.encode())
        self.index_manifest(cid)
        return cid

    def index_manifest(self, cid: Cid) -> None:
        (self.manifests_dir / str(cid)).touch()
        if self.on_manifest is not None:
            self.on_manifest(cid)

    def manifest(self, cid: Cid) -> Manifest:
        if cid.codec != MANIFEST_CODEC:
            raise BlockNotFoundError(NOT_FOUND)
        return Manifest.decode(self.get(cid))

    def manifests(self) -> Iterator[tuple[Cid, Manifest]]:
        for marker in sorted(self.manifests_dir.iterdir()):
            cid = Cid.parse(marker.name)
            if self.has(cid):
                yield cid, self.manifest(cid)

    # -- deletion and expiry ------------------------------------------------------------------------
    def delete(self, cid: Cid) -> None:
        """A manifest CID deletes its dataset (blocks no other local dataset uses); a block CID, one block."""
        if cid.codec != MANIFEST_CODEC or not self.has(cid):
            self._remove_block(cid)
            return
        tree_cid = self.manifest(cid).tree_cid
        self._remove_block(cid)
        (self.manifests_dir / str(cid)).unlink(missing_ok=True)
        other_trees = {m.tree_cid for _, m in self.manifests()}
        if tree_cid in other_trees:
            return
        still_used = {leaf for tree in other_trees for leaf in self._known_leaves(tree)}
        for leaf in self._known_leaves(tree_cid):
            if leaf not in still_used:
                self._remove_block(Cid(BLOCK_CODEC, leaf))
        (self.trees_dir / str(tree_cid)).unlink(missing_ok=True)
        self._leaves.pop(tree_cid, None)

    def _known_leaves(self, tree_cid: Cid) -> list[bytes]:
        try:
            return [leaf for leaf in self.tree_leaves(tree_cid) if leaf != ZERO_DIGEST]
        except BlockNotFoundError:
            return []

    def expire(self, ttl_seconds: int, max_blocks: int) -> int:
        """Delete up to max_blocks blocks stored (or refreshed) more than ttl_seconds ago."""
        if ttl_seconds <= 0:
            return 0
        removed = self.blocks.expire(time.time() - ttl_seconds, max_blocks)
        self.quota_used_bytes -= sum(removed)
        self.total_blocks -= len(removed)
        return len(removed)

    def space(self) -> dict[str, int]:
        return {
            "totalBlocks": self.total_blocks,
            "quotaMaxBytes": self.quota_max_bytes,
            "quotaUsedBytes": self.quota_used_bytes,
            "quotaReservedBytes": self.quota_reserved_bytes,
        }
