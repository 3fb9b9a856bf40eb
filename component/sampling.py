"""Sampled data capture for model monitoring: CaptureData to the agent, off the hot path.

The run loop only calls `offer()`, which decides in O(1) whether this inference is sampled (probability
`rate`, at most `budget_per_hour` per rolling hour) and hands it to a bounded queue without blocking; a
worker thread sends it with the agent client. A full queue drops the sample and counts it; a failed
CaptureData is logged and counted; neither ever touches classification.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent_client import AgentClient
from agent_client.errors import AgentError

logger = logging.getLogger(__name__)

HOUR = 3600.0


@dataclass(frozen=True)
class Sample:
    inputs: dict[str, np.ndarray] = field(repr=False)
    outputs: dict[str, np.ndarray] = field(repr=False)
    inference_time: float


@dataclass
class CaptureCounters:
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    over_budget: int = 0


class CaptureSampler:
    def __init__(
        self,
        client: AgentClient,
        model_name: str,
        rate: float,
        budget_per_hour: int,
        queue_size: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.model_name = model_name
        self.rate = rate
        self.budget_per_hour = budget_per_hour
        self.counters = CaptureCounters()
        self._rng = rng or random.Random()
        self._taken: deque[float] = deque()
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=queue_size)
        self.thread = threading.Thread(target=self._work, name="capture-sampler", daemon=True)

    def start(self) -> None:
        """Starts the worker; it idles on the queue while the rate is 0 (the rate may change at run time)."""
        self.thread.start()
        if self.rate > 0:
            logger.info("capturing %s of inferences, at most %d an hour", self.rate, self.budget_per_hour)

    def offer(
        self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], inference_time: float
    ) -> None:
        """Maybe queue this inference for capture; never blocks."""
        if self.rate <= 0 or self._rng.random() >= self.rate:
            return
        now = time.monotonic()
        while self._taken and now - self._taken[0] >= HOUR:
            self._taken.popleft()
        if len(self._taken) >= self.budget_per_hour:
            self.counters.over_budget += 1
            return
        try:
            self._queue.put_nowait(Sample(inputs, outputs, inference_time))
        except queue.Full:
            self.counters.dropped += 1
            return
        self._taken.append(now)

    def counts(self) -> dict[str, int]:
        return {
            "captures_sent": self.counters.sent,
            "captures_dropped": self.counters.dropped + self.counters.over_budget,
            "captures_failed": self.counters.failed,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Sends what is queued within timeout seconds, then stops the worker."""
        if not self.thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("capture queue still full at shutdown; %d sample(s) dropped", self._queue.qsize())
            return
        self.thread.join(timeout)

    def _work(self) -> None:
        while (sample := self._queue.get()) is not None:
            try:
                self.client.capture_data(
                    self.model_name, sample.inputs, sample.outputs, inference_time=sample.inference_time
                )
            except AgentError as exc:
                self.counters.failed += 1
                logger.warning("CaptureData failed (classification goes on): %s", exc)
                continue
            self.counters.sent += 1
