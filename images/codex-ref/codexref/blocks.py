"""Where block bytes live: upstream's `--repo-kind`. `fs` (upstream's default) keeps one file per
block; `sqlite` keeps them in one SQLite database (WAL), far cheaper per block on disks where
creating a file costs a millisecond. `pack` (reference-only) appends blocks to segment files
indexed in SQLite: each block is written once, where SQLite writes a 64 KiB blob to its WAL and
again into the database, on two 64 KiB pages. All are safe to write from a worker thread;
reads and deletes run on the node's event loop.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from codexref.cid import Cid

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)  # Linux only
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free a byte range of a file (disk blocks and page cache); the range reads as zeros after.
    False where the filesystem or platform cannot."""
    if _fallocate is None:
        return False
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(error, os.strerror(error))


class BlockBackend(Protocol):
    def has(self, cid: Cid) -> bool: ...
    def stored(self, cids: list[Cid]) -> set[Cid]: ...
    def get(self, cid: Cid) -> bytes | None: ...
    # cached=False asks to write around the page cache; only PackBlocks can, the others ignore it
    def write_many(self, blocks: list[tuple[Cid, bytes]], cached: bool = True) -> list[bool]: ...
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

    def write_many(self, blocks: list[tuple[Cid, bytes]], cached: bool = True) -> list[bool]:
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


class _PerThreadSqlite:
    """One SQLite connection per thread (WAL, so readers never wait for the writer)."""

    def __init__(self, path: Path, page_size: int = 4096) -> None:
        self.path, self.page_size = path, page_size
        self.local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute(f"pragma page_size={self.page_size}")
            db.execute("pragma journal_mode=wal")
            db.execute("pragma synchronous=normal")
        return db

    def _stored_keys(self, keys: list[bytes]) -> set[bytes]:
        """Which of these CIDs (bytes) the `blocks` table holds: one query per 500, not one each."""
        found: set[bytes] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = f"select cid from blocks where cid in ({','.join('?' * len(chunk))})"
            found.update(row[0] for row in self._db().execute(query, chunk))
        return found

    def stored(self, cids: list[Cid]) -> set[Cid]:
        keys = [cid.to_bytes() for cid in cids]
        found = self._stored_keys(keys)
        return {cid for cid, key in zip(cids, keys, strict=True) if key in found}


class SqliteBlocks(_PerThreadSqlite):
    """All blocks in repo.sqlite3."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / "repo.sqlite3", page_size=65536)  # fewer overflow pages per blob
        self._db().execute(
            "create table if not exists blocks"
            " (cid blob primary key, data blob not null, stored real not null)"
        )
        self._db().execute("create index if not exists blocks_stored on blocks (stored)")

    def has(self, cid: Cid) -> bool:
        return (
            self._db().execute("select 1 from blocks where cid = ?", (cid.to_bytes(),)).fetchone() is not None
        )

    def get(self, cid: Cid) -> bytes | None:
        row = self._db().execute("select data from blocks where cid = ?", (cid.to_bytes(),)).fetchone()
        return row[0] if row else None

    def write_many(self, blocks: list[tuple[Cid, bytes]], cached: bool = True) -> list[bool]:
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


class PackBlocks(_PerThreadSqlite):
    """Blocks appended to segment files `seg-<n>` (a new one after SEGMENT_BYTES), found through
    index.sqlite3 (cid -> segment, offset, length, stored). A message's new blocks are one
    pwritev and one index transaction; data is written before the index row that points to it,
    so a crash leaves at most unreferenced bytes. A deleted block becomes a hole in its segment
    (disk space and page cache freed at once, where the filesystem can punch holes); a segment
    file goes when no block in it is left (quota counts live blocks, as upstream's).

    `cached=False` writes around the page cache (O_DIRECT) when every block is a whole number
    of 4 KiB (dataset blocks are 64 KiB): the run starts at the next 4 KiB boundary and goes
    through an aligned buffer. Otherwise, or where the filesystem refuses O_DIRECT (tmpfs), the
    write goes through the page cache as usual. Reads always do."""

    SEGMENT_BYTES = 1 << 30
    LOCATIONS_KEPT = 1 << 16  # about 10 MB: the blocks being served or fetched right now
    DIRECT_ALIGN = 4096  # O_DIRECT offsets, lengths and buffers: whole sectors of 512 B or 4 KiB

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / "index.sqlite3")
        self.root = root
        db = self._db()
        db.execute(
            "create table if not exists blocks (cid blob primary key, segment int not null,"
            " offset int not null, length int not null, stored real not null)"
        )
        db.execute("create index if not exists blocks_stored on blocks (stored)")
        db.execute("create index if not exists blocks_segment on blocks (segment)")
        self._append_lock = threading.Lock()  # one writer appends (and unlinks) at a time
        self._fd_lock = threading.Lock()
        self._fds: dict[tuple[int, bool], int] = {}  # (segment, O_DIRECT) -> fd
        self._direct = hasattr(os, "O_DIRECT")  # until the filesystem refuses it
        # Recently written or read locations: a served block is looked up for its want-have, its
        # want-block and its delivery, and an index query costs more than the rest of the three.
        self._locations: dict[bytes, tuple[int, int, int]] = {}
        segments = sorted(int(p.name.removeprefix("seg-")) for p in root.glob("seg-*"))
        self._segment = segments[-1] if segments else 0
        self._end = os.fstat(self._fd(self._segment)).st_size

    def _fd(self, segment: int, direct: bool = False) -> int:
        with self._fd_lock:
            fd = self._fds.get((segment, direct))
            if fd is None:
                flags = os.O_RDWR | os.O_CREAT | (os.O_DIRECT if direct else 0)
                fd = self._fds[(segment, direct)] = os.open(self.root / f"seg-{segment}", flags, 0o600)
            return fd

    def _write_around_cache(self, datas: list[bytes]) -> bool:
        """Write `datas` with O_DIRECT at the next aligned offset (which becomes `_end`); False,
        having written nothing, when they do not fit its rules or the filesystem refuses it."""
        align = self.DIRECT_ALIGN
        if not self._direct or any(len(data) % align for data in datas):
            return False
        try:
            fd = self._fd(self._segment, direct=True)
        except OSError:
            self._direct = False
            return False
        total = sum(len(data) for data in datas)
        bounce = getattr(self.local, "bounce", None)  # mmap memory is page-aligned
        if bounce is None or len(bounce) < total:
            bounce = self.local.bounce = mmap.mmap(-1, total)
        position = 0
        for data in datas:
            bounce[position : position + len(data)] = data
            position += len(data)
        start = -(-self._end // align) * align
        try:
            os.pwritev(fd, [memoryview(bounce)[:total]], start)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # some filesystems open with O_DIRECT, then refuse writes
                raise
            self._direct = False
            return False
        self._end = start
        return True

    def _locate(self, cid: Cid) -> tuple[int, int, int] | None:
        key = cid.to_bytes()
        found = self._locations.get(key)
        if found is None:
            query = "select segment, offset, length from blocks where cid = ?"
            found = self._db().execute(query, (key,)).fetchone()
            if found is not None:
                self._remember(key, found)
        return found

    def _remember(self, key: bytes, location: tuple[int, int, int]) -> None:
        if len(self._locations) >= self.LOCATIONS_KEPT:
            self._locations.clear()  # cheaper than LRU bookkeeping; hot blocks come back at next use
        self._locations[key] = location

    def has(self, cid: Cid) -> bool:
        return self._locate(cid) is not None

    def _stored_keys(self, keys: list[bytes]) -> set[bytes]:
        """The location cache answers first; the index only for the rest."""
        cached = {key for key in keys if key in self._locations}
        return cached | super()._stored_keys([key for key in keys if key not in cached])

    def get(self, cid: Cid) -> bytes | None:
        found = self._locate(cid)
        if found is None:
            return None
        segment, offset, length = found
        return os.pread(self._fd(segment), length, offset)

    def write_many(self, blocks: list[tuple[Cid, bytes]], cached: bool = True) -> list[bool]:
        keys = [cid.to_bytes() for cid, _ in blocks]
        db, now = self._db(), time.time()
        with self._append_lock:
            known = self._stored_keys(keys)
            created, new, seen = [], [], set(known)
            for key, (_, data) in zip(keys, blocks, strict=True):
                created.append(key not in seen)
                if key not in seen:
                    seen.add(key)
                    new.append((key, data))
            if new and self._end >= self.SEGMENT_BYTES:
                self._segment, self._end = self._segment + 1, 0
            datas = [data for _, data in new]
            if new and (cached or not self._write_around_cache(datas)):
                os.pwritev(self._fd(self._segment), datas, self._end)
            rows, offset = [], self._end
            for key, data in new:
                rows.append((key, self._segment, offset, len(data), now))
                offset += len(data)
            db.execute("begin immediate")
            try:
                db.executemany("insert into blocks values (?, ?, ?, ?, ?)", rows)
                db.executemany("update blocks set stored = ? where cid = ?", [(now, key) for key in known])
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise
            self._end = offset
            for key, segment, block_offset, length, _ in rows:
                self._remember(key, (segment, block_offset, length))
        return created

    def _drop(self, rows: list[tuple[bytes, int, int, int]]) -> list[int]:
        """Remove index rows (cid, segment, offset, length), then the bytes they pointed to:
        segments no block is left in are unlinked, blocks in the others become holes."""
        db = self._db()
        for cid, *_ in rows:
            self._locations.pop(cid, None)
        db.executemany("delete from blocks where cid = ?", [(cid,) for cid, *_ in rows])
        with self._append_lock:
            emptied = set()
            for segment in {segment for _, segment, _, _ in rows} - {self._segment}:
                if db.execute("select 1 from blocks where segment = ? limit 1", (segment,)).fetchone():
                    continue
                emptied.add(segment)
                with self._fd_lock:
                    fds = [self._fds.pop((segment, direct), None) for direct in (False, True)]
                for fd in fds:
                    if fd is not None:
                        os.close(fd)
                (self.root / f"seg-{segment}").unlink(missing_ok=True)
            for _, segment, offset, length in rows:
                if segment not in emptied:
                    punch_hole(self._fd(segment), offset, length)
        return [length for *_, length in rows]

    def delete(self, cid: Cid) -> int:
        found = self._locate(cid)
        if found is None:
            return 0
        return self._drop([(cid.to_bytes(), *found)])[0]

    def usage(self) -> tuple[int, int]:
        return self._db().execute("select count(*), coalesce(sum(length), 0) from blocks").fetchone()

    def expire(self, cutoff: float, limit: int) -> list[int]:
        query = "select cid, segment, offset, length from blocks where stored < ? limit ?"
        return self._drop(self._db().execute(query, (cutoff, limit)).fetchall())


REPO_KINDS = {"fs": FsBlocks, "sqlite": SqliteBlocks, "pack": PackBlocks}
