"""A bounded, ordered, on-disk outbox (SQLite) for messages bound for IoT Core.

Messages stay until acknowledged, so those published while the broker is down, or before a restart of
the stand-in, are delivered later in order. Past ``limit`` messages the oldest is dropped, counted and
warned about.

Disk faults (a full disk, an unwritable database) never escape as sqlite3 errors: ``put`` raises
OutboxError (the publisher is answered ServiceError: the message was not accepted); ``ack`` and ``drop``
return False so the caller can retry them later; reads return nothing. The fault is logged (throttled),
shown by ``status()`` until a write succeeds again, and then logged as over.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gglocal.errors import OutboxError
from gglocal.iotcore import IotMessage
from gglocal.private import touch_private
from gglocal.throttle import LogThrottle

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10000
RECOVERY_LOG_S = 1.0

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
        self.path = str(path)
        self.limit = limit
        self.dropped = 0
        self.refused = 0
        self.undeliverable = 0
        self.fault: str | None = None
        self._fault_since = 0.0
        self._fault_log = LogThrottle()
        self._cond = threading.Condition()
        if self.path != ":memory:":
            touch_private(Path(path))  # SQLite gives its -wal and -shm files the database file's mode
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    # -- writes ----------------------------------------------------------------------------------
    def put(self, message: IotMessage) -> None:
        """Store a message; OutboxError when it cannot be stored (it is then not accepted)."""
        with self._cond:
            try:
                self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                    (message.topic, message.payload, message.qos, int(message.retain)),
                )
                (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
                excess = count - self.limit
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                self._db.commit()
            except sqlite3.Error as exc:
                self.refused += 1
                self._failed("store a message", exc)
                raise OutboxError(
                    f"the local outbox cannot store the message for IoT Core ({exc}); it was not accepted. "
                    f"Free disk space for {self.path}"
                ) from exc
            self._recovered()
            self._cond.notify_all()
            if excess > 0:
                self.dropped += excess
        if excess > 0:
            logger.warning(
                "outbox full (%d messages): dropped the oldest; %d dropped so far", self.limit, self.dropped
            )

    def ack(self, seqs: int | Sequence[int]) -> bool:
        """Remove delivered messages; False (fault recorded) when the database cannot be written now."""
        batch = [seqs] if isinstance(seqs, int) else list(seqs)
        return self._delete(batch, "remove delivered messages")

    def drop(self, seq: int, reason: str) -> bool:
        """Remove a message that can never be delivered, counted as undeliverable."""
        logger.error("outbox: dropped message %d for good: %s", seq, reason)
        with self._cond:
            self.undeliverable += 1
        return self._delete([seq], "remove an undeliverable message")

    def _delete(self, seqs: list[int], what: str) -> bool:
        with self._cond:
            try:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                self._db.commit()
            except sqlite3.Error as exc:
                self._failed(what, exc)
                return False
            self._recovered()
            self._cond.notify_all()
        return True

    # -- reads -----------------------------------------------------------------------------------
    def head(self, after: int = 0) -> OutboxEntry | None:
        """The oldest message with a sequence number above ``after``; None when there is none (or no read)."""
        with self._cond:
            try:
                row = self._db.execute(
                    "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1",
                    (after,),
                ).fetchone()
            except sqlite3.Error as exc:
                self._failed("read", exc)
                return None
        if row is None:
            return None
        seq, topic, payload, qos, retain = row
        return OutboxEntry(seq, IotMessage(topic, bytes(payload), int(qos), bool(retain)))

    def wait_for_message(self, timeout: float, after: int = 0) -> bool:
        """Block until the outbox holds a message above ``after`` (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.head(after) is not None, timeout)

    def wait_until_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self) == 0, timeout)

    def __len__(self) -> int:
        with self._cond:
            try:
                (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            except sqlite3.Error as exc:
                self._failed("count", exc)
                return 0
        return int(count)

    def status(self) -> dict[str, Any]:
        """Counters and the current fault (None when healthy), for ``gglocal status``."""
        with self._cond:
            since = round(time.monotonic() - self._fault_since, 1) if self.fault else None
            counters = {
                "dropped_oldest": self.dropped,
                "refused": self.refused,
                "undeliverable": self.undeliverable,
                "fault": self.fault,
                "fault_for_s": since,
            }
        return {"queued": len(self), **counters}

    def close(self) -> None:
        with self._cond:
            self._db.close()

    # -- faults ----------------------------------------------------------------------------------
    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        """Called holding the lock: roll back, record and log (throttled) a database fault."""
        with contextlib.suppress(sqlite3.Error):
            self._db.rollback()
        if self.fault is None:
            self._fault_since = time.monotonic()
        self.fault = f"cannot {what}: {exc}"
        if (held := self._fault_log.ready()) is not None:
            logger.error(
                "outbox %s: %s (%d refused so far; %d more not logged); free disk space, delivery resumes"
                " by itself",
                self.path,
                self.fault,
                self.refused,
                held,
            )

    def _recovered(self) -> None:
        if self.fault is None:
            return
        lasted = time.monotonic() - self._fault_since
        # a disk at its limit lets a write through now and then: only a real recovery is worth a line
        log = logger.warning if lasted >= RECOVERY_LOG_S else logger.debug
        log("outbox %s works again after %.1f s (%s)", self.path, lasted, self.fault)
        self.fault = None
