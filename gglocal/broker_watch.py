"""Says clearly when the MQTT broker standing in for IoT Core cannot be reached while messages pile up.

The bridge keeps reconnecting and the outbox keeps every QoS 1 message (up to its limit in bytes), so
nothing fails; without a word a developer would only see results not arriving. ``BrokerWatch`` logs a
WARNING ``warn_after_s`` after the broker went away with messages waiting, then every ``warn_every_s`` while
it stays away, and INFO when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from gglocal.outbox import Outbox

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0


class BrokerLink(Protocol):
    """What the watch reads of the bridge (``gglocal.mqtt_bridge.MqttBridge``)."""

    host: str
    port: int

    @property
    def connected(self) -> bool: ...

    @property
    def outbox(self) -> Outbox: ...


class BrokerWatch:
    """A thread that watches one bridge; ``start()``/``stop()``."""

    def __init__(
        self,
        link: BrokerLink,
        *,
        warn_after_s: float = 5.0,
        warn_every_s: float = 60.0,
        poll_s: float = 0.5,
    ) -> None:
        self._link = link
        self.warn_after_s = warn_after_s
        self.warn_every_s = warn_every_s
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gglocal-broker-watch", daemon=True)
        self.warnings = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)

    def _watch(self) -> None:
        away_since: float | None = None
        last_warning: float | None = None
        while not self._stop.wait(self._poll_s):
            now = time.monotonic()
            waiting = len(self._link.outbox)
            if self._link.connected or not waiting:
                if last_warning is not None and self._link.connected:
                    logger.info(
                        "MQTT broker %s:%d reachable again after %.0f s; delivering %d waiting message(s)",
                        self._link.host,
                        self._link.port,
                        now - (away_since or now),
                        waiting,
                    )
                away_since = last_warning = None
                continue
            away_since = away_since if away_since is not None else now
            due = self.warn_after_s if last_warning is None else self.warn_every_s
            if now - (last_warning if last_warning is not None else away_since) >= due:
                last_warning = now
                self.warnings += 1
                self._warn(waiting, now - away_since)

    def _warn(self, waiting: int, away_s: float) -> None:
        outbox = self._link.outbox
        logger.warning(
            "MQTT broker %s:%d cannot be reached (for %.0f s); %d message(s) wait in the outbox "
            "(limit %d bytes, %d QoS 0 dropped so far); is the broker running? (--mqtt HOST:PORT)",
            self._link.host,
            self._link.port,
            away_s,
            waiting,
            outbox.limit,
            outbox.dropped,
        )
