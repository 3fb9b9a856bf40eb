"""Log throttling for conditions that can recur thousands of times a second (a flood, a full disk)."""

from __future__ import annotations

import threading
import time

DEFAULT_INTERVAL_S = 10.0


class LogThrottle:
    """Allows one log line per ``interval_s`` and counts the occurrences it held back in between.

    ``if (held := throttle.ready()) is not None: logger.warning("...; %d more not logged", held)``
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def ready(self) -> int | None:
        """None when this occurrence is not to be logged; else how many were held back since the last line."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return None
            held, self._held = self._held, 0
            self._next = now + self.interval_s
            return held

    def reset(self) -> None:
        """The condition is over: its next occurrence is logged at once."""
        with self._lock:
            self._next = 0.0
            self._held = 0
