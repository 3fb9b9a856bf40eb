"""A bounded, ordered, on-disk outbox (SQLite) for messages bound for IoT Core.

Messages stay until acknowledged, so those published while the broker is down, or before a restart of
the stand-in, are delivered later in order. It is bounded as the Java nucleus bounds its spooler
(``Spool.queueCapacityCheck``): at most ``limit`` payload bytes (2.5 MiB by default, the nucleus's
``maxSizeInBytes``); a message that does not fit first makes the oldest QoS 0 messages go (dropped,
counted, warned about, and gone even if it then still does not fit, as in the nucleus); if it still does
not fit, or is larger than the whole spool, it is refused (OutboxError, which the publisher sees as
ServiceError: "Message spool is full"). QoS 1 messages are never dropped to make room. When the
connection is lost every queued QoS 0 message goes (``drop_qos0``: the nucleus's ``keepQos0WhenOffline``
is false by default).

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

DEFAULT_LIMIT = int(2.5 * 1024 * 1024)
"""Payload bytes the spool holds: the Java nucleus's default ``maxSizeInBytes``."""
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
    """Thread-safe FIFO persisted in SQLite, bounded in payload bytes; ``path`` may be ``":memory:"``."""

    def __init__(self, path: Path | str, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("outbox limit must be at least 1 byte")
        self.path = str(path)
        self.limit = limit
        self.dropped = 0
        self.refused = 0
        self.undeliverable = 0
        self.fault: str | None = None
        self._fault_since = 0.0
        self._fault_log = LogThrottle()
        self._full_log = LogThrottle()
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
        size = len(message.payload)
        if size > self.limit:  # checked first, as the nucleus does: nothing queued is dropped for it
            with self._cond:
                self.refused += 1
            raise OutboxError(
                f"the message ({size} bytes) is larger than the whole spool ({self.limit} bytes); it was not"
                " accepted"
            )
        with self._cond:
            try:
                dropped, fits = self._make_room(size)
                if fits:
                    self._db.execute(
                        "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                        (message.topic, message.payload, message.qos, int(message.retain)),
                    )
                self._db.commit()  # the QoS 0 messages dropped for room stay dropped, as in the nucleus
            except sqlite3.Error as exc:
                self.refused += 1
                self._failed("store a message", exc)
                raise OutboxError(
                    f"the local outbox cannot store the message for IoT Core ({exc}); it was not accepted. "
                    f"Free disk space for {self.path}"
                ) from exc
            self._recovered()
            self.dropped += dropped
            if not fits:
                self.refused += 1
            counts = (self.dropped, self.refused)
            if fits:
                self._cond.notify_all()
        if dropped:
            logger.warning(
                "spool full (%d bytes): dropped %d queued QoS 0 message(s) to make room; %d dropped so far",
                self.limit,
                dropped,
                counts[0],
            )
        if fits:
            return
        if (held := self._full_log.ready()) is not None:
            logger.warning(
                "spool full (%d bytes): refused a %d-byte message (%d refused so far, %d more not logged)",
                self.limit,
                size,
                counts[1],
                held,
            )
        raise OutboxError(f"Message spool is full ({self.limit} bytes); the message was not accepted")

    def drop_qos0(self) -> int:
        """Remove every queued QoS 0 message (the connection was lost: the nucleus keeps none offline);
        how many went."""
        with self._cond:
            try:
                gone = self._db.execute("DELETE FROM outbox WHERE qos = 0").rowcount
                self._db.commit()
            except sqlite3.Error as exc:
                self._failed("drop QoS 0 messages", exc)
                return 0
            self.dropped += gone
            self._cond.notify_all()
        return int(gone)

    def _make_room(self, size: int) -> tuple[int, bool]:
        """Called holding the lock, inside a transaction: delete the oldest QoS 0 messages until ``size``
        more bytes fit (Java ``Spool.queueCapacityCheck``: they go even when the message still does not
        fit); how many went, and whether it fits now."""
        (held,) = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        excess = int(held) + size - self.limit
        if excess <= 0:
            return 0, True
        victims: list[int] = []
        for seq, length in self._db.execute(
            "SELECT seq, LENGTH(payload) FROM outbox WHERE qos = 0 ORDER BY seq"
        ).fetchall():
            if excess <= 0:
                break
            victims.append(int(seq))
            excess -= int(length)
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in victims])
        return len(victims), excess <= 0

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
                "dropped_qos0": self.dropped,
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
