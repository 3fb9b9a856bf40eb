"""A bounded, ordered, on-disk outbox (SQLite) for messages bound to IoT Core.

Messages stay until acknowledged, so those published while the broker is down, or before a restart of
the stand-in, are delivered later in order. Past ``limit`` messages the oldest is dropped, counted and
warned about.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from gglocal.iotcore import IotMessage
from gglocal.private import touch_private

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    message: IotMessage


class Outbox:
    """Thread-safe FIFO persisted in SQLite; ``path`` may be ``":memory:"``."""

    def __init__(self, path: Path | str, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("outbox limit must be at least 1")
        self.limit = limit
        self.dropped = 0
        self._cond = threading.Condition()
        if str(path) != ":memory:":
            touch_private(Path(path))  # SQLite gives its -wal and -shm files the database file's mode
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def put(self, message: IotMessage) -> None:
        with self._cond:
            self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (message.topic, message.payload, message.qos, int(message.retain)),
            )
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            excess = count - self.limit
            if excess > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,)
                )
            self._db.commit()
            self._cond.notify_all()
            if excess > 0:
                self.dropped += excess
        if excess > 0:
            logger.warning(
                "outbox full (%d messages): dropped the oldest; %d dropped so far", self.limit, self.dropped
            )

    def head(self) -> OutboxEntry | None:
        with self._cond:
            row = self._db.execute(
                "SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        seq, topic, payload, qos, retain = row
        return OutboxEntry(seq, IotMessage(topic, bytes(payload), int(qos), bool(retain)))

    def ack(self, seq: int) -> None:
        with self._cond:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.commit()
            self._cond.notify_all()

    def wait_for_message(self, timeout: float) -> bool:
        """Block until the outbox holds a message (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self) > 0, timeout)

    def wait_until_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self) == 0, timeout)

    def __len__(self) -> int:
        with self._cond:
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def close(self) -> None:
        with self._cond:
            self._db.close()
