"""The peer's database (sqlite in the data dir): account, communities, messages, archive state.

Table and column names follow status-go's where it has them (`community_message_archive_hashes`,
`communities_archive_info` with `archive_link_clock`, `last_archive_link`,
`last_message_archive_end_date`), so a reader of either finds the same facts.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS communities (
    id TEXT PRIMARY KEY, private_key TEXT, joined INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL, history_archive_support INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS requests_to_join (
    id TEXT PRIMARY KEY, community_id TEXT NOT NULL, public_key TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waku_messages (
    hash TEXT PRIMARY KEY, community_id TEXT NOT NULL, topic TEXT NOT NULL, timestamp INTEGER NOT NULL,
    raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS user_messages (
    id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, community_id TEXT NOT NULL, text TEXT NOT NULL,
    clock INTEGER NOT NULL, timestamp INTEGER NOT NULL, sender TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS community_message_archive_hashes (
    community_id TEXT NOT NULL, hash TEXT PRIMARY KEY, cid TEXT NOT NULL, start INTEGER NOT NULL,
    end INTEGER NOT NULL, imported INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS communities_archive_info (
    community_id TEXT PRIMARY KEY, archive_link_clock INTEGER NOT NULL DEFAULT 0,
    last_archive_link TEXT NOT NULL DEFAULT '', last_message_archive_end_date INTEGER NOT NULL DEFAULT 0);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    # -- settings --------------------------------------------------------------------------------
    def get(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def put(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    # -- communities -----------------------------------------------------------------------------
    def save_community(self, community_id: str, description: dict, private_key: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO communities (id, private_key, description) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET description = excluded.description",
            (community_id, private_key, json.dumps(description)),
        )

    def community(self, community_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM communities WHERE id = ?", (community_id,)).fetchone()

    def communities(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM communities").fetchall()

    def set_joined(self, community_id: str) -> None:
        self.db.execute("UPDATE communities SET joined = 1 WHERE id = ?", (community_id,))

    def set_history_archive_support(self, community_id: str, enabled: bool) -> None:
        self.db.execute(
            "UPDATE communities SET history_archive_support = ? WHERE id = ?", (int(enabled), community_id)
        )

    # -- requests to join ------------------------------------------------------------------------
    def save_request(self, request_id: str, community_id: str, public_key: str, state: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO requests_to_join VALUES (?, ?, ?, ?)",
            (request_id, community_id, public_key, state),
        )

    def request(self, request_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM requests_to_join WHERE id = ?", (request_id,)).fetchone()

    # -- messages --------------------------------------------------------------------------------
    def save_waku_message(
        self, digest: str, community_id: str, topic: str, timestamp_ns: int, raw: bytes
    ) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO waku_messages VALUES (?, ?, ?, ?, ?)",
            (digest, community_id, topic, timestamp_ns, raw),
        )

    def waku_messages(self, community_id: str, start_s: int, end_s: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT raw FROM waku_messages WHERE community_id = ? AND timestamp >= ? AND timestamp < ? "
            "ORDER BY timestamp",
            (community_id, start_s * 10**9, end_s * 10**9),
        ).fetchall()
        return [row["raw"] for row in rows]

    def oldest_waku_message_s(self, community_id: str) -> int | None:
        row = self.db.execute(
            "SELECT MIN(timestamp) AS t FROM waku_messages WHERE community_id = ?", (community_id,)
        ).fetchone()
        return row["t"] // 10**9 if row["t"] is not None else None

    def save_user_message(self, message: dict, source: str) -> bool:
        """True when the message is new (a duplicate from an archive is not emitted twice)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO user_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message["id"], message["chatId"], message["communityId"], message["text"], message["clock"],
                message["timestamp"], message["from"], source,
            ),
        )  # fmt: skip
        return cursor.rowcount == 1

    def chat_messages(self, chat_id: str, limit: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM user_messages WHERE chat_id = ? ORDER BY clock DESC LIMIT ?", (chat_id, limit)
        ).fetchall()
        return [
            {
                "id": r["id"], "chatId": r["chat_id"], "communityId": r["community_id"], "text": r["text"],
                "clock": r["clock"], "timestamp": r["timestamp"], "from": r["sender"], "source": r["source"],
            }
            for r in rows
        ]  # fmt: skip

    # -- archives --------------------------------------------------------------------------------
    def archive_info(self, community_id: str) -> sqlite3.Row:
        self.db.execute(
            "INSERT OR IGNORE INTO communities_archive_info (community_id) VALUES (?)", (community_id,)
        )
        return self.db.execute(
            "SELECT * FROM communities_archive_info WHERE community_id = ?", (community_id,)
        ).fetchone()

    def update_archive_info(self, community_id: str, **values) -> None:
        self.archive_info(community_id)
        for column, value in values.items():
            self.db.execute(
                f"UPDATE communities_archive_info SET {column} = ? WHERE community_id = ?",
                (value, community_id),
            )

    def save_archive_id(self, community_id: str, archive_id: str, cid: str, start: int, end: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO community_message_archive_hashes VALUES (?, ?, ?, ?, ?, 0)",
            (community_id, archive_id, cid, start, end),
        )

    def archive_ids(self, community_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT hash FROM community_message_archive_hashes WHERE community_id = ? ORDER BY start",
            (community_id,),
        ).fetchall()
        return [row["hash"] for row in rows]

    def archives_to_import(self, community_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM community_message_archive_hashes WHERE community_id = ? AND imported = 0 "
            "ORDER BY start DESC",
            (community_id,),
        ).fetchall()

    def set_imported(self, archive_id: str) -> None:
        self.db.execute(
            "UPDATE community_message_archive_hashes SET imported = 1 WHERE hash = ?", (archive_id,)
        )
