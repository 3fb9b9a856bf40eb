"""Capped exponential delays, the one retry pacing of the component (agent, source, core)."""

from __future__ import annotations


class Backoff:
    """first, 2*first, 4*first, ... up to cap; reset() after a success."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first
