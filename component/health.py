"""The component's state as the Greengrass core sees it, the same on both cores: ERRORED only where a restart
is the cure, and never more often than the core tolerates.

- Outages outside the component (camera, stream, agent, broker) are never reported to the core: the run
  loop keeps retrying on its own, and says so on the status topic and in its log. (The Java nucleus answers
  ERRORED by restarting the component and marks it BROKEN after three errors within an hour; a rebooting
  camera must not end a device's classification for good.)
- A wedged component is: the run loop has not beaten for `errored_after` seconds (it beats between frames
  and while it waits on an outage, so only a stuck call or a deadlock stops it), or a worker thread it
  depends on has died. Then the watchdog reports ERRORED (the Java nucleus stops and restarts the
  component); if the process is still alive `exit_after` seconds later (default: errored_after, within
  5..60 s; nucleus lite ignores ERRORED), it
  saves what it can (`on_exit`) and exits with status 70, and the core starts it again.
- At most `budget` such restarts per rolling hour (two: the Java nucleus makes a component BROKEN at the
  third error within an hour), counted across restarts in `state_file`; past the budget the watchdog only
  says, loudly, that the component needs a restart.

RUNNING is never reported: both cores set it when the run script starts, and the Java nucleus accepts
RUNNING only from STARTING.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .files import write_private

logger = logging.getLogger(__name__)

HOUR = 3600.0
WEDGED_EXIT_CODE = 70

# Sends one lifecycle state to the core (UpdateState); raises on failure.
StateSender = Callable[[str], None]


class RestartBudget:
    """Restarts the watchdog caused in the last hour, kept in a file so that they count across processes."""

    def __init__(self, path: Path | None, per_hour: int = 2, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.per_hour = per_hour
        self._clock = clock

    def _recent(self) -> list[float]:
        if self.path is None:
            return []
        try:
            stamps = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        now = self._clock()
        return [float(t) for t in stamps if isinstance(t, int | float) and now - float(t) < HOUR]

    def left(self) -> int:
        return max(0, self.per_hour - len(self._recent()))

    def spend(self) -> None:
        stamps = [*self._recent(), self._clock()]
        if self.path is None:
            return
        try:
            write_private(self.path, json.dumps(stamps))
        except OSError as exc:
            logger.warning("cannot record the restart in %s: %s", self.path, exc)


class Watchdog:
    """See the module docstring. `beat()` from the run loop; `watch(thread)` for each worker it needs."""

    def __init__(
        self,
        send_state: StateSender | None,
        errored_after: float,
        budget: RestartBudget,
        exit_after: float | None = None,
        on_exit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self._send = send_state
        self.errored_after = errored_after
        self.budget = budget
        self.exit_after = exit_after  # None: errored_after, within 5..60 s
        self._on_exit = on_exit
        self._clock = clock
        self._exit = exit
        self._due = clock() + errored_after  # the next beat is due by then
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self.wedged: str | None = None  # why, once it decided the component is wedged
        self.errored_sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def beat(self, allow: float = 0.0) -> None:
        """The loop is making progress; `allow` announces a call that may legitimately take that long (a
        Predict up to its deadline, a LoadModel up to its own)."""
        self._due = self._clock() + max(self.errored_after, allow)

    def watch(self, thread: threading.Thread) -> None:
        """A worker thread the component cannot do without: its death is a reason to restart."""
        self._threads.append(thread)

    def forget(self, thread: threading.Thread) -> None:
        """A worker the component ends on purpose (a replaced source's reader): no reason to restart."""
        self._threads = [t for t in self._threads if t is not thread]

    def check(self) -> str | None:
        """Why the component is wedged now, or None."""
        if self.errored_after <= 0:
            return None
        late = self._clock() - self._due
        if late >= 0:
            return f"the run loop has made no progress for {late + self.errored_after:.0f} s"
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead:
            return f"worker thread(s) {', '.join(dead)} died"
        return None

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            reason = self.check()
            if reason is not None and self.wedged is None:
                self.wedged = reason
                self._restart(reason)
            elif reason is None and self.wedged is not None:
                logger.warning("the component recovered by itself (%s no longer holds)", self.wedged)
                self.wedged = None

    def _restart(self, reason: str) -> None:
        if self.budget.left() <= 0:
            logger.critical(
                "the component is wedged (%s) and needs a restart, but it already restarted itself %d times "
                "in the last hour, the most the core tolerates before BROKEN; restart it by hand",
                reason,
                self.budget.per_hour,
            )
            return
        self.budget.spend()
        logger.critical(
            "the component is wedged (%s): reporting ERRORED so that the core restarts it", reason
        )
        if self._send is not None:
            try:
                self._send("ERRORED")
                self.errored_sent += 1
            except Exception as exc:  # any IPC failure: the exit below is the fallback either way
                logger.error("could not report ERRORED to the core (%s)", type(exc).__name__)
        grace = self.exit_after if self.exit_after is not None else min(60.0, max(5.0, self.errored_after))
        if self._stop.wait(grace):
            return
        logger.critical("still running %.0f s after ERRORED (the core did not restart it): exiting", grace)
        if self._on_exit is not None:
            try:
                self._on_exit()
            except Exception:  # saving is best effort when the process is wedged
                logger.exception("saving state before the exit failed")
        self._exit(WEDGED_EXIT_CODE)
