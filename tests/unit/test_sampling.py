"""Sampled CaptureData, driven through a hand-written stand-in for the agent client (no sockets)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np

from agent_client.errors import AgentUnavailableError
from component.sampling import CaptureSampler

X = {"input": np.zeros((1, 3), np.float32)}
Y = {"logits": np.ones((1, 2), np.float32)}


class RecordingClient:
    """capture_data() records its calls; it can fail, or block until released."""

    def __init__(self, fail: bool = False, block: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fail, self.block = fail, block

    def capture_data(self, model_name: str, inputs: Any, outputs: Any, inference_time: float) -> str:
        if self.block is not None:
            self.block.wait(10)
        if self.fail:
            raise AgentUnavailableError("agent down")
        self.calls.append((model_name, inference_time))
        return "id"


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def sampler(client: RecordingClient, rate: float, budget: int = 100, queue_size: int = 8) -> CaptureSampler:
    s = CaptureSampler(client, "m", rate, budget, queue_size, rng=random.Random(7))  # type: ignore[arg-type]
    s.start()
    return s


def test_rate_zero_captures_nothing() -> None:
    client = RecordingClient()
    s = sampler(client, 0.0)
    for i in range(50):
        s.offer(X, Y, float(i))
    s.stop()
    assert client.calls == []


def test_a_rate_samples_about_that_share_and_keeps_the_inference_time() -> None:
    client = RecordingClient()
    s = sampler(client, 0.25, queue_size=1000)
    for i in range(400):
        s.offer(X, Y, float(i))
    s.stop()
    assert 70 <= len(client.calls) <= 130
    assert all(name == "m" for name, _ in client.calls)
    assert [t for _, t in client.calls] == sorted(t for _, t in client.calls)


def test_the_hourly_budget_caps_captures() -> None:
    client = RecordingClient()
    s = sampler(client, 1.0, budget=3)
    for i in range(10):
        s.offer(X, Y, float(i))
    s.stop()
    assert len(client.calls) == 3 and s.counters.over_budget == 7


def test_a_slow_agent_never_blocks_the_caller_samples_are_dropped_and_counted() -> None:
    release = threading.Event()
    client = RecordingClient(block=release)
    s = sampler(client, 1.0, queue_size=2)
    started = time.monotonic()
    for i in range(20):
        s.offer(X, Y, float(i))
    assert time.monotonic() - started < 0.5  # offer() returned at once every time
    release.set()
    s.stop()
    assert s.counters.dropped >= 17 and len(client.calls) + s.counters.dropped == 20


def test_failed_captures_are_counted_and_the_sampler_goes_on() -> None:
    client = RecordingClient(fail=True)
    s = sampler(client, 1.0)
    for i in range(3):
        s.offer(X, Y, float(i))
    wait_for(lambda: s.counters.failed == 3)
    client.fail = False
    s.offer(X, Y, 9.0)
    s.stop()
    assert client.calls == [("m", 9.0)]
