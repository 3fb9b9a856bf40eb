"""Results on their way to the publisher: nothing already classified is lost, nothing blocks the rest.

- `put` appends a result and sends what is queued, oldest first; a result the publisher does not accept
  now (PublishError: the core unreachable, a full spooler) stays queued, in order, for the next try.
- A result refused for good (PublishDeniedError: topic outside accessControl; PublishRejectedError: topic or
  payload the core never takes) is dropped and counted: it never blocks the results behind it.
- The queue holds at most `limit` results; past that the oldest is dropped and counted.
- `spill()` writes what is still queued to `spill_path` (owner-only, JSON lines) when the component stops,
  and `restore()` queues it again at the next start, so a restart by the core loses nothing accepted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_client.errors import PublishDeniedError, PublishError, PublishRejectedError

from .files import write_private
from .publishers import Publisher

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 256


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

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, topic: str, payload: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) >= self.limit:
                self._queue.popleft()
                self.dropped += 1
                logger.warning("outbox full (%d results): dropped the oldest unpublished result", self.limit)
            self._queue.append((topic, payload))
        self.flush()

    def flush(self) -> bool:
        """Sends what is queued, oldest first; True when nothing is left."""
        with self._lock:
            while self._queue:
                topic, payload = self._queue[0]
                try:
                    self.publisher.publish(topic, payload)
                except (PublishDeniedError, PublishRejectedError) as exc:
                    self._queue.popleft()
                    self.refused += 1
                    logger.error("result %s dropped: %s", payload.get("frame-id"), exc)
                    continue
                except PublishError as exc:
                    self.publish_failures += 1
                    logger.warning("publish failed, %d result(s) kept for retry: %s", len(self._queue), exc)
                    return False
                self._queue.popleft()
                self.published += 1
            return True

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
