"""The durable store-and-forward queue (SQLite on a data volume), of two users.

WAL + synchronous=FULL: a committed row survives a process kill and a power cut. A row is
deleted only after the next hop's PUBACK, and forwarded ids are remembered for a while so a
message that comes again with the same id is not sent twice.
- The MQTT bridge (services/mqtt_bridge): a message from the local broker is committed here
  before the local PUBACK, and sent on to the cloud broker.
- The reporter's outbox (shared/data/outbox.py): the report and the final totals are committed here
  when the report is on disk, and sent to the local broker until it takes them.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    UNIQUE (msg_id, part)
);
CREATE TABLE IF NOT EXISTS forwarded (
    msg_id TEXT PRIMARY KEY,
    forwarded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""

FORWARDED_KEEP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Row:
    seq: int
    msg_id: str
    part: int
    kind: str
    topic: str
    payload: bytes
    attempts: int


class DurableQueue:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Explicit transactions below. Any thread: a service may open it in set-up and use it in its
        # loop, never from two threads at once.
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.db.execute("DELETE FROM forwarded WHERE forwarded_at < ?", (time.time() - FORWARDED_KEEP_SECONDS,))

    def enqueue(self, msg_id: str, kind: str, topic: str, payloads: list[bytes]) -> bool:
        """Commit all parts of one message; False if it was already queued or forwarded."""
        now = time.time()
        with self.db:  # one transaction: all parts or none
            self.db.execute("BEGIN IMMEDIATE")
            # Known id (queued, even partly sent, or forwarded): a redelivery, not a new message.
            if self.db.execute("SELECT 1 FROM forwarded WHERE msg_id=? UNION ALL "
                               "SELECT 1 FROM outbox WHERE msg_id=? LIMIT 1", (msg_id, msg_id)).fetchone():
                return False
            cur = self.db.executemany(
                "INSERT OR IGNORE INTO outbox (msg_id, part, kind, topic, payload, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(msg_id, i, kind, topic, p, now) for i, p in enumerate(payloads)])
        return cur.rowcount > 0

    def due(self, limit: int, exclude: set[int]) -> list[Row]:
        now = time.time()
        rows = self.db.execute(
            "SELECT seq, msg_id, part, kind, topic, payload, attempts FROM outbox"
            " WHERE next_attempt_at <= ? ORDER BY seq LIMIT ?", (now, limit + len(exclude))).fetchall()
        return [Row(*r) for r in rows if r[0] not in exclude][:limit]

    def done(self, seq: int) -> None:
        """The cloud acknowledged this row; when it was the message's last part, remember the id."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT msg_id FROM outbox WHERE seq=?", (seq,)).fetchone()
            self.db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            if row and not self.db.execute("SELECT 1 FROM outbox WHERE msg_id=?", row).fetchone():
                self.db.execute("INSERT OR REPLACE INTO forwarded VALUES (?, ?)", (row[0], time.time()))

    def retry_later(self, seq: int, delay: float) -> None:
        self.db.execute("UPDATE outbox SET attempts=attempts+1, next_attempt_at=? WHERE seq=?",
                        (time.time() + delay, seq))

    def retry_all_now(self) -> None:
        """Every row due at once (a flush asked for by hand, not at its backoff)."""
        self.db.execute("UPDATE outbox SET next_attempt_at=0")

    def dead_letter(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO dead_letter (received_at, topic, reason, detail, payload)"
                            " VALUES (?, ?, ?, ?, ?)", (time.time(), topic, reason, detail[:500], payload))

    def depth(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_age(self) -> float:
        oldest = self.db.execute("SELECT MIN(enqueued_at) FROM outbox").fetchone()[0]
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def close(self) -> None:
        self.db.close()
