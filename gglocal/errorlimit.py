"""When a component's errors make it BROKEN: each core's rule as a named policy.

* :class:`PerStateErrors` is the Java nucleus (``Lifecycle.reportState``): errors are counted per state the
  component was in (NEW for Install, STARTING, RUNNING); a list is cleared when the next error comes an
  hour or more after the last one (``errorResetTime``, 3600 s), and when the component leaves that state
  normally (STARTING -> RUNNING, RUNNING -> STOPPING). The third error in a list makes it BROKEN.
* :class:`StartLimit` is nucleus lite, whose components are systemd units with ``Restart=on-failure``,
  ``RestartSec=1``, ``StartLimitBurst=3`` and ``StartLimitInterval=3600`` (recipe2unit): each start of a unit
  counts in a window that opens at the first start; a start past the burst is refused and the unit fails.
  A deployment's ``systemctl reset-failed`` clears the counts (``reset``).
"""

from __future__ import annotations

from typing import Protocol


class ErrorLimit(Protocol):
    def error(self, state: str, now: float) -> bool:
        """Record an error in ``state``; True when the component is now BROKEN."""
        ...

    def start(self, unit: str, now: float) -> bool:
        """Record a start of ``unit`` ("install" or "run"); False when the core refuses it (BROKEN)."""
        ...

    def left(self, state: str) -> None:
        """The component left ``state`` for a state other than ERRORED."""
        ...

    def reset(self) -> None:
        """A new deployment: forget everything counted."""
        ...


class PerStateErrors:
    """The Java nucleus's rule (see the module docstring)."""

    def __init__(self, max_errors: int = 3, reset_s: float = 3600.0) -> None:
        self.max_errors = max_errors
        self.reset_s = reset_s
        self._errors: dict[str, list[float]] = {}

    def error(self, state: str, now: float) -> bool:
        times = self._errors.setdefault(state, [])
        if times and now - times[-1] >= self.reset_s:
            times.clear()
        times.append(now)
        return len(times) >= self.max_errors

    def start(self, unit: str, now: float) -> bool:
        return True

    def left(self, state: str) -> None:
        self._errors.pop(state, None)

    def reset(self) -> None:
        self._errors.clear()


class StartLimit:
    """Nucleus lite's systemd start limit (see the module docstring)."""

    def __init__(self, burst: int = 3, interval_s: float = 3600.0) -> None:
        self.burst = burst
        self.interval_s = interval_s
        self._windows: dict[str, tuple[float, int]] = {}

    def error(self, state: str, now: float) -> bool:
        return False

    def start(self, unit: str, now: float) -> bool:
        begin, count = self._windows.get(unit, (now, 0))
        if now - begin >= self.interval_s:
            begin, count = now, 0
        self._windows[unit] = (begin, count + 1)
        return count + 1 <= self.burst

    def left(self, state: str) -> None:
        return None

    def reset(self) -> None:
        self._windows.clear()


def error_limit(kind: str, max_errors: int, window_s: float) -> ErrorLimit:
    """The policy a profile names ("per-state" or "start-limit")."""
    if kind == "per-state":
        return PerStateErrors(max_errors, window_s)
    if kind == "start-limit":
        return StartLimit(max_errors, window_s)
    raise ValueError(f"unknown error limit {kind!r}; use per-state or start-limit")
