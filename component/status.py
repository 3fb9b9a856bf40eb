"""Health and metrics on a status topic every StatusInterval seconds, from a thread of its own (so a status
message goes out even while the run loop waits on an outage or is wedged).

Payload: {"timestamp", "state": RUNNING | WAITING_FOR_AGENT | AGENT_TOO_SLOW | WAITING_FOR_SOURCE |
MODEL_FAILING | WEDGED | STOPPED, "model": {name, version, sha256}, "source", "fps",
"latency-ms": {stage: {p50, p90, p99}}, "counters": {...}, "configuration": {...}, "process": {"cpu-percent",
"rss-mb"}}. The counters come from the stages themselves (each `counts()`); "configuration" says whether
the last update was applied or refused and why, and which keys were ignored. A status message that cannot
be published is dropped (the next one says more); results never wait for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agent_client.errors import PublishError

from .publishers import Publisher

logger = logging.getLogger(__name__)

STATUS_PREFIX = "edgeclassifier/status/"

# Builds the payload's content (everything but the timestamp) at the moment a message goes out.
Snapshot = Callable[[], dict[str, Any]]


def default_status_topic() -> str:
    """edgeclassifier/status/<thing name>: the recipe's accessControl allows edgeclassifier/status/+."""
    return STATUS_PREFIX + (os.environ.get("AWS_IOT_THING_NAME") or "local")


class StatusReporter:
    def __init__(self, publisher: Publisher, topic: str, interval: float, snapshot: Snapshot) -> None:
        self.publisher = publisher
        self.topic = topic
        self.interval = interval
        self.snapshot = snapshot
        self.sent = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def reconfigure(self, topic: str, interval: float) -> None:
        self.topic, self.interval = topic, interval
        self._wake.set()

    def stop(self, final_state: str | None = "STOPPED") -> None:
        """Stops the thread; sends a last message with final_state unless status messages are off."""
        self._stop.set()
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(5.0)
        if final_state is not None and self.interval > 0:
            self.report(final_state)

    def report(self, state: str | None = None) -> bool:
        payload: dict[str, Any] = {"timestamp": str(datetime.now(tz=timezone.utc)), **self.snapshot()}
        if state is not None:
            payload["state"] = state
        try:
            self.publisher.publish(self.topic, payload)
        except PublishError as exc:
            logger.warning("status message not published: %s", exc)
            return False
        self.sent += 1
        return True

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            interval = self.interval
            wait = 1.0 if interval <= 0 else max(0.0, last + interval - time.monotonic())
            if self._wake.wait(wait):
                self._wake.clear()
                continue
            if interval > 0 and not self._stop.is_set():
                last = time.monotonic()
                self.report()
