"""Where block bytes live: upstream's `--repo-kind`. `fs` (upstream's default) keeps one file per
block; `sqlite` keeps them in one SQLite database (WAL). Both are safe to write from a worker
thread; reads and deletes run on the node's event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from testbed_toolkit.cid import Cid


class BlockBackend(Protocol):
    def has(self, cid: Cid) -> bool: ...
    def stored(self, cids: list[Cid]) -> set[Cid]: ...
    def get(self, cid: Cid) -> bytes | None: ...
    def write_many(self, blocks: list[tuple[Cid, bytes]]) -> list[bool]: ...
    def delete(self, cid: Cid) -> int: ...
    def usage(self) -> tuple[int, int]: ...
    def expire(self, cutoff: float, limit: int) -> list[int]: ...


class FsBlocks:
    """One file per block under repo/<first digest byte>/<cid>, linked into place whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for shard in range(256):
            (root / f"{shard:02x}").mkdir(parents=True, exist_ok=True)

    def _path(self, cid: Cid) -> Path:
        return self.root / cid.digest[:1].hex() / str(cid)

    def has(self, cid: Cid) -> bool:
        return self._path(cid).exists()

    def stored(self, cids: list[Cid]) -> set[Cid]:
        return {cid for cid in cids if self.has(cid)}

    def get(self, cid: Cid) -> bytes | None:
        try:
            return self._path(cid).read_bytes()
        except FileNotFoundError:
            return None

    def write_many(self, blocks: list[tuple[Cid, bytes]]) -> list[bool]:
        created = []
        for cid, data in blocks:
            path = self._path(cid)
            if path.exists():
                os.utime(path)  # a re-stored block gets a fresh TTL, as upstream refreshes expiry
                created.append(False)
                continue
            tmp = f"{path}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # appears whole, exactly once, however many writers race
                created.append(True)
            except FileExistsError:
                created.append(False)
            finally:
                os.unlink(tmp)
        return created

    def delete(self, cid: Cid) -> int:
        path = self._path(cid)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def _files(self):
        return (p for p in self.root.glob("*/*") if not p.name.endswith(".tmp"))

    def usage(self) -> tuple[int, int]:
        sizes = [p.stat().st_size for p in self._files()]
        return len(sizes), sum(sizes)

    def expire(self, cutoff: float, limit: int) -> list[int]:
        removed = []
        for path in self._files():
            if len(removed) >= limit:
                break
            if path.stat().st_mtime < cutoff:
                removed.append(path.stat().st_size)
                path.unlink()
        return removed


class SqliteBlocks:
    """All blocks in repo.sqlite3, one connection per thread (WAL, so readers never wait for the
    writer)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "repo.sqlite3"
        self.local = threading.local()
        self._db().execute(
            "create table if not exists blocks"
            " (cid blob primary key, data blob not null, stored real not null)"
        )
        self._db().execute("create index if not exists blocks_stored on blocks (stored)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute("pragma journal_mode=wal")
            db.execute("pragma synchronous=normal")
        return db

    def stored(self, cids: list[Cid]) -> set[Cid]:
        """Which of these CIDs the table holds: one query per 500, not one each."""
        keys = [cid.to_bytes() for cid in cids]
        found: set[bytes] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = f"select cid from blocks where cid in ({','.join('?' * len(chunk))})"
            found.update(row[0] for row in self._db().execute(query, chunk))
        return {cid for cid, key in zip(cids, keys, strict=True) if key in found}

    def has(self, cid: Cid) -> bool:
        return (
            self._db().execute("select 1 from blocks where cid = ?", (cid.to_bytes(),)).fetchone() is not None
        )

    def get(self, cid: Cid) -> bytes | None:
        row = self._db().execute("select data from blocks where cid = ?", (cid.to_bytes(),)).fetchone()
        return row[0] if row else None

    def write_many(self, blocks: list[tuple[Cid, bytes]]) -> list[bool]:
        db, now, created = self._db(), time.time(), []
        db.execute("begin immediate")
        try:
            for cid, data in blocks:
                key = cid.to_bytes()
                inserted = db.execute(
                    "insert or ignore into blocks values (?, ?, ?)", (key, data, now)
                ).rowcount
                if not inserted:
                    db.execute("update blocks set stored = ? where cid = ?", (now, key))
                created.append(inserted == 1)
            db.execute("commit")
        except BaseException:
            db.execute("rollback")
            raise
        return created

    def delete(self, cid: Cid) -> int:
        db = self._db()
        row = db.execute("select length(data) from blocks where cid = ?", (cid.to_bytes(),)).fetchone()
        if row is None:
            return 0
        db.execute("delete from blocks where cid = ?", (cid.to_bytes(),))
        return row[0]

    def usage(self) -> tuple[int, int]:
        count, size = (
            self._db().execute("select count(*), coalesce(sum(length(data)), 0) from blocks").fetchone()
        )
        return count, size

    def expire(self, cutoff: float, limit: int) -> list[int]:
        db = self._db()
        rows = db.execute(
            "select cid, length(data) from blocks where stored < ? limit ?", (cutoff, limit)
        ).fetchall()
        db.executemany("delete from blocks where cid = ?", [(cid,) for cid, _ in rows])
        return [size for _, size in rows]


REPO_KINDS = {"fs": FsBlocks, "sqlite": SqliteBlocks}
