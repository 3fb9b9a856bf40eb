"""Results on their way to the publisher: nothing already classified is lost, nothing blocks the rest.

- `put` appends a result and sends what is queued, oldest first; a result the publisher does not accept
  now (PublishError: the core unreachable, a full spooler; nucleus lite's ServiceError while its MQTT
  connection is down or it has 10 QoS 1 publishes in flight, as it keeps nothing) stays queued, in order,
  for the next try: the next `put`, or `retry()` (called between frames) once its capped backoff is due,
  so held results go out even when no new result comes.
- An outage is logged once when it starts, reminded every REMIND_SECONDS, and once when results go out
  again: a core refusing every publish never floods the log.
- A result refused for good (PublishDeniedError: topic outside accessControl; PublishRejectedError: topic or
  payload the core never takes) is dropped and counted: it never blocks the results behind it (logged at
  ERROR once, then at most every REMIND_SECONDS with the count).
- The queue holds at most `limit` results; past that the oldest is dropped and counted (warned about once
  per outage; the reminders say how many).
- `spill()` writes what is still queued to `spill_path` (owner-only, JSON lines) when the component stops,
  and `restore()` queues it again at the next start, so a restart by the core loses nothing accepted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_client.errors import PublishDeniedError, PublishError, PublishRejectedError

from .backoff import Backoff
from .files import write_private
from .publishers import Publisher

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 256
REMIND_SECONDS = 60.0  # how often a lasting publish outage is logged again


class ResultOutbox:
    def __init__(
        self, publisher: Publisher, limit: int = DEFAULT_LIMIT, spill_path: Path | None = None
    ) -> None:
        self.publisher = publisher
        self.limit = limit
        self.spill_path = spill_path
        self.published = 0
        self.publish_failures = 0
        self.dropped = 0  # the queue was full
        self.refused = 0  # the core refused them for good
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._backoff = Backoff(0.25, 2.0)
        self._retry_at = 0.0
        self._outage: float | None = None  # when publishing started failing; None while it works
        self._reminded = 0.0
        self._full_warned = False
        self._refusal_logged = -REMIND_SECONDS  # when a refusal for good was last logged

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, topic: str, payload: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) >= self.limit:
                self._queue.popleft()
                self.dropped += 1
                if not self._full_warned:
                    self._full_warned = True
                    logger.warning(
                        "outbox full (%d results): dropping the oldest unpublished results until the core"
                        " accepts them again",
                        self.limit,
                    )
            self._queue.append((topic, payload))
        self.flush()

    def retry(self) -> bool:
        """Sends what is held once the backoff after the last failure is due; True when nothing is left."""
        if not self._queue:
            return True
        if time.monotonic() < self._retry_at:
            return False
        return self.flush()

    def flush(self) -> bool:
        """Sends what is queued, oldest first, until one is not accepted; True when nothing is left."""
        with self._lock:
            sent = 0
            while self._queue:
                topic, payload = self._queue[0]
                try:
                    self.publisher.publish(topic, payload)
                except (PublishDeniedError, PublishRejectedError) as exc:
                    self._queue.popleft()
                    self.refused += 1
                    self._refused_for_good(payload, exc)
                    continue
                except PublishError as exc:
                    self.publish_failures += 1
                    self._failed(exc)
                    return False
                self._queue.popleft()
                self.published += 1
                sent += 1
            self._recovered(sent)
            return True

    def _refused_for_good(self, payload: Mapping[str, Any], exc: PublishError) -> None:
        """Called holding the lock: one ERROR line, then one per REMIND_SECONDS with the count."""
        now = time.monotonic()
        if now - self._refusal_logged < REMIND_SECONDS:
            logger.debug("result %s dropped: %s", payload.get("frame-id"), exc)
            return
        self._refusal_logged = now
        logger.error(
            "result %s dropped, the core refuses it for good (%d refused so far; the next such line in"
            " %.0f s at the earliest): %s",
            payload.get("frame-id"),
            self.refused,
            REMIND_SECONDS,
            exc,
        )

    def _failed(self, exc: PublishError) -> None:
        """Called holding the lock: paces the next retry and logs the outage (once, then reminders)."""
        now = time.monotonic()
        self._retry_at = now + self._backoff.next()
        if self._outage is None:
            self._outage, self._reminded = now, now
            logger.warning(
                "publish failed, %d result(s) kept for retry (in order; no more lines until it works or"
                " every %.0f s): %s",
                len(self._queue),
                REMIND_SECONDS,
                exc,
            )
        elif now - self._reminded >= REMIND_SECONDS:
            self._reminded = now
            logger.warning(
                "publishing still fails after %.0f s (%d failed attempts), %d result(s) kept, %d dropped"
                " so far: %s",
                now - self._outage,
                self.publish_failures,
                len(self._queue),
                self.dropped,
                exc,
            )
        else:
            logger.debug("publish failed, %d result(s) kept: %s", len(self._queue), exc)

    def _recovered(self, sent: int) -> None:
        """Called holding the lock after everything queued went out."""
        self._backoff.reset()
        self._retry_at = 0.0
        self._full_warned = False
        if self._outage is not None:
            logger.info(
                "publishing works again after %.1f s; %d held result(s) sent in order",
                time.monotonic() - self._outage,
                sent,
            )
            self._outage = None

    def counts(self) -> Mapping[str, int]:
        return {
            "published": self.published,
            "publish_failures": self.publish_failures,
            "dropped_results": self.dropped,
            "refused_results": self.refused,
            "queued_results": len(self._queue),
        }

    def spill(self) -> int:
        """Writes the queued results to spill_path (replacing it); the number written."""
        if self.spill_path is None:
            return 0
        locked = self._lock.acquire(timeout=2.0)  # a wedged publish may hold it: read the queue anyway
        try:
            lines = [json.dumps({"topic": t, "payload": p}) for t, p in list(self._queue)]
        finally:
            if locked:
                self._lock.release()
        if not lines:
            with contextlib.suppress(FileNotFoundError):
                self.spill_path.unlink()
            return 0
        try:
            write_private(self.spill_path, "\n".join(lines) + "\n")
        except OSError as exc:
            logger.error(
                "could not keep %d unpublished result(s) in %s: %s", len(lines), self.spill_path, exc
            )
            return 0
        logger.info("kept %d unpublished result(s) in %s for the next start", len(lines), self.spill_path)
        return len(lines)

    def restore(self) -> int:
        """Queues the results a previous run spilled (and removes the file); the number restored."""
        if self.spill_path is None:
            return 0
        try:
            text = self.spill_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            logger.error("cannot read the unpublished results in %s: %s", self.spill_path, exc)
            return 0
        restored = 0
        with self._lock:
            for line in text.splitlines():
                try:
                    item = json.loads(line)
                    topic, payload = str(item["topic"]), dict(item["payload"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("skipping a damaged line in %s", self.spill_path)
                    continue
                self._queue.append((topic, payload))
                restored += 1
            while len(self._queue) > self.limit:
                self._queue.popleft()
                self.dropped += 1
        with contextlib.suppress(FileNotFoundError):
            self.spill_path.unlink()
        if restored:
            logger.info("restored %d unpublished result(s) from the previous run", restored)
        return restored
