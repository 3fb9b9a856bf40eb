"""Health and metrics on a status topic every StatusInterval seconds, driven from the run loop.

Payload: {"timestamp", "state": "RUNNING" | "WAITING_FOR_AGENT" | "WAITING_FOR_SOURCE" | "STOPPED",
"model": {name, version, sha256}, "source", "fps", "latency-ms": {stage: {p50, p90, p99}},
"counters": {...}, "process": {"cpu-percent", "rss-mb"}}. A status message that cannot be published is
dropped (the next one says more); results never wait for it.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

from agent_client.errors import PublishError

from .metrics import Metrics
from .publishers import Publisher
from .results import ModelIdentity

logger = logging.getLogger(__name__)

STATUS_PREFIX = "edgeclassifier/status/"


def default_status_topic() -> str:
    """edgeclassifier/status/<thing name>: the recipe's accessControl allows edgeclassifier/status/+."""
    return STATUS_PREFIX + (os.environ.get("AWS_IOT_THING_NAME") or "local")


class StatusReporter:
    def __init__(self, publisher: Publisher, topic: str, interval: float, metrics: Metrics) -> None:
        self.publisher = publisher
        self.topic = topic
        self.interval = interval
        self.metrics = metrics
        self.sent = 0
        self._last = time.monotonic()

    def maybe_report(self, state: str, model: ModelIdentity, source: str) -> None:
        """Publishes when the interval has passed; an interval of 0 turns status messages off."""
        if self.interval > 0 and time.monotonic() - self._last >= self.interval:
            self.report(state, model, source)

    def report(self, state: str, model: ModelIdentity, source: str) -> None:
        self._last = time.monotonic()
        payload: dict[str, Any] = {
            "timestamp": str(datetime.now(tz=timezone.utc)),
            "state": state,
            "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
            "source": source,
            **self.metrics.snapshot(),
        }
        try:
            self.publisher.publish(self.topic, payload)
        except PublishError as exc:
            logger.warning("status message not published: %s", exc)
            return
        self.sent += 1
