"""The block repo on disk: blocks by CID, Merkle leaves per tree, a manifest index, a quota.

Layout under the data dir (survives restarts): `repo/<xx>/<cid>` one file per block (dataset
blocks are stored padded to 64 KiB), `meta/trees/<treeCid>` the 32-byte leaf digests in order,
`meta/manifests/<cid>` an empty marker per locally stored manifest. Quota usage counts stored
block bytes (deduplicated), as upstream's `/space` does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from codexref.cid import BLOCK_CODEC, MANIFEST_CODEC, Cid
from codexref.manifest import Manifest

DIGEST_LEN = 32
ZERO_DIGEST = bytes(DIGEST_LEN)


class BlockNotFoundError(LookupError):
    pass


class QuotaNotEnoughError(RuntimeError):
    pass


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RepoStore:
    def __init__(self, data_dir: Path, quota_max_bytes: int) -> None:
        self.blocks_dir = data_dir / "repo"
        self.trees_dir = data_dir / "meta" / "trees"
        self.manifests_dir = data_dir / "meta" / "manifests"
        for folder in (self.blocks_dir, self.trees_dir, self.manifests_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.quota_max_bytes = quota_max_bytes
        self.quota_used_bytes = 0
        self.total_blocks = 0
        for path in self._block_files():
            self.quota_used_bytes += path.stat().st_size
            self.total_blocks += 1

    # -- blocks ---------------------------------------------------------------------------------
    def _block_path(self, cid: Cid) -> Path:
        text = str(cid)
        return self.blocks_dir / text[-2:] / text

    def _block_files(self) -> Iterator[Path]:
        return (p for p in self.blocks_dir.glob("*/*") if not p.name.endswith(".tmp"))

    def has(self, cid: Cid) -> bool:
        return self._block_path(cid).exists()

    def get(self, cid: Cid) -> bytes:
        try:
            return self._block_path(cid).read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError("Block not found in local store") from None

    def put(self, cid: Cid, data: bytes) -> None:
        path = self._block_path(cid)
        if path.exists():
            os.utime(path)  # a re-stored block gets a fresh TTL, as upstream refreshes expiry
            return
        used = self.quota_used_bytes + len(data)
        if used > self.quota_max_bytes:
            raise QuotaNotEnoughError(
                f"Quota usage would exceed the limit. Used: {used}, reserved: 0, "
                f"limit: {self.quota_max_bytes}"
            )
        _atomic_write(path, data)
        self.quota_used_bytes = used
        self.total_blocks += 1

    def _remove_block(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self.quota_used_bytes -= size
        self.total_blocks -= 1

    # -- trees and manifests ----------------------------------------------------------------------
    def put_tree(self, tree_cid: Cid, leaves: list[bytes]) -> None:
        _atomic_write(self.trees_dir / str(tree_cid), b"".join(leaves))

    def ensure_tree(self, tree_cid: Cid, nleaves: int) -> None:
        """Room for a tree being downloaded: unknown leaves are all-zero digests."""
        path = self.trees_dir / str(tree_cid)
        if not path.exists():
            _atomic_write(path, bytes(DIGEST_LEN * nleaves))

    def put_leaf(self, tree_cid: Cid, index: int, digest: bytes) -> None:
        with (self.trees_dir / str(tree_cid)).open("r+b") as tree:
            tree.seek(index * DIGEST_LEN)
            tree.write(digest)

    def leaf_digest(self, tree_cid: Cid, index: int) -> bytes | None:
        """The leaf's block digest, or None when the tree or that leaf is unknown here."""
        try:
            with (self.trees_dir / str(tree_cid)).open("rb") as tree:
                digest = os.pread(tree.fileno(), DIGEST_LEN, index * DIGEST_LEN)
        except FileNotFoundError:
            return None
        return digest if len(digest) == DIGEST_LEN and digest != ZERO_DIGEST else None

    def tree_leaves(self, tree_cid: Cid) -> list[bytes]:
        """All leaf digests in order; unknown leaves of a partial tree are all zeros."""
        try:
            raw = (self.trees_dir / str(tree_cid)).read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError("Block not found in local store") from None
        return [raw[i : i + DIGEST_LEN] for i in range(0, len(raw), DIGEST_LEN)]

    def has_leaf(self, tree_cid: Cid, index: int) -> bool:
        digest = self.leaf_digest(tree_cid, index)
        return digest is not None and self.has(Cid(BLOCK_CODEC, digest))

    def block_at(self, tree_cid: Cid, index: int) -> bytes:
        digest = self.leaf_digest(tree_cid, index)
        if digest is None:
            raise BlockNotFoundError("Block not found in local store")
        return self.get(Cid(BLOCK_CODEC, digest))

    def put_manifest(self, manifest: Manifest) -> Cid:
        cid = manifest.cid()
        self.put(cid, manifest.encode())
        (self.manifests_dir / str(cid)).touch()
        return cid

    def manifest(self, cid: Cid) -> Manifest:
        if cid.codec != MANIFEST_CODEC:
            raise BlockNotFoundError("Block not found in local store")
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
            self._remove_block(self._block_path(cid))
            return
        tree_cid = self.manifest(cid).tree_cid
        self._remove_block(self._block_path(cid))
        (self.manifests_dir / str(cid)).unlink(missing_ok=True)
        other_trees = {m.tree_cid for _, m in self.manifests()}
        if tree_cid in other_trees:
            return
        still_used = {leaf for tree in other_trees for leaf in self._leaves_or_empty(tree)}
        for leaf in self._leaves_or_empty(tree_cid):
            if leaf not in still_used:
                self._remove_block(self._block_path(Cid(BLOCK_CODEC, leaf)))
        (self.trees_dir / str(tree_cid)).unlink(missing_ok=True)

    def _leaves_or_empty(self, tree_cid: Cid) -> list[bytes]:
        try:
            return [leaf for leaf in self.tree_leaves(tree_cid) if leaf != ZERO_DIGEST]
        except BlockNotFoundError:
            return []

    def expire(self, ttl_seconds: int, max_blocks: int) -> int:
        """Delete up to max_blocks blocks stored (or refreshed) more than ttl_seconds ago."""
        if ttl_seconds <= 0:
            return 0
        cutoff = time.time() - ttl_seconds
        removed = 0
        for path in self._block_files():
            if removed >= max_blocks:
                break
            if path.stat().st_mtime < cutoff:
                self._remove_block(path)
                removed += 1
        return removed

    def space(self) -> dict[str, int]:
        return {
            "totalBlocks": self.total_blocks,
            "quotaMaxBytes": self.quota_max_bytes,
            "quotaUsedBytes": self.quota_used_bytes,
            "quotaReservedBytes": 0,
        }
