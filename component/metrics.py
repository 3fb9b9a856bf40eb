"""Run-time numbers of the component: per-stage latency percentiles, frame rate, CPU and memory (the
counters belong to the stages that count them).

Latencies and frame times are kept for the last `window` classified frames; CPU and RSS come from the
process itself (resource.getrusage and /proc/self/statm), so no extra dependency is needed.
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque

import numpy as np

from .frames import StageLatency

STAGES = ("read", "preprocess", "predict", "postprocess", "total")


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Metrics:
    def __init__(self, window: int = 500) -> None:
        self._latencies: deque[StageLatency] = deque(maxlen=window)
        self._done: deque[float] = deque(maxlen=window)
        self._cpu_mark = (time.monotonic(), _cpu_seconds())

    def frame_classified(self, latency: StageLatency) -> None:
        self._latencies.append(latency)
        self._done.append(time.monotonic())

    def fps(self) -> float:
        """Classified frames per second over the window, 0 when fewer than two frames were classified."""
        if len(self._done) < 2 or self._done[-1] <= self._done[0]:
            return 0.0
        return (len(self._done) - 1) / (self._done[-1] - self._done[0])

    def latency_percentiles(self) -> dict[str, dict[str, float]]:
        """p50/p90/p99 in milliseconds per stage over the window (empty before the first frame)."""
        if not self._latencies:
            return {}
        rows = [[s.read, s.preprocess, s.predict, s.postprocess, s.total] for s in self._latencies]
        table = np.percentile(np.array(rows, dtype=np.float64), [50, 90, 99], axis=0)
        return {
            stage: {name: round(float(table[q, i]), 3) for q, name in enumerate(("p50", "p90", "p99"))}
            for i, stage in enumerate(STAGES)
        }

    def process(self) -> dict[str, float]:
        """CPU use since the previous call (percent of one core) and resident memory."""
        now, cpu = time.monotonic(), _cpu_seconds()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        percent = 100.0 * (cpu - cpu_then) / (now - then) if now > then else 0.0
        return {"cpu-percent": round(percent, 1), "rss-mb": round(_rss_mb(), 1)}
