"""The component's result outbox while the core does not accept publishes (nucleus lite answers ServiceError
while its MQTT connection is down, and keeps nothing): results kept in order, retried when due, one log
line per outage."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent_client.errors import PublishDeniedError, PublishError
from component import outbox as outbox_module
from component.outbox import REMIND_SECONDS, ResultOutbox


class Core:
    """A publisher that refuses while ``down`` (as a core that keeps nothing offline) and records the rest."""

    name = "core"

    def __init__(self) -> None:
        self.down = False
        self.attempts = 0
        self.accepted: list[int] = []

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.attempts += 1
        if self.down:
            raise PublishError("PublishToIoTCore: the core answered ServiceError")
        self.accepted.append(payload["frame-id"])

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(outbox_module.time, "monotonic", fake)
    return fake


def test_results_refused_while_the_core_is_offline_go_out_in_order_once_it_accepts_again(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    core = Core()
    outbox = ResultOutbox(core)
    outbox.put("gg/r", {"frame-id": 1})
    core.down = True
    with caplog.at_level(logging.DEBUG, logger="component.outbox"):
        for frame in range(2, 50):
            clock.now += 0.5
            outbox.put("gg/r", {"frame-id": frame})
        core.down = False
        outbox.put("gg/r", {"frame-id": 50})
    assert core.accepted == list(range(1, 51))
    assert outbox.counts()["queued_results"] == 0 and outbox.counts()["publish_failures"] == 48
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "kept for retry" in warnings[0].getMessage()  # no flood: one per outage
    assert "works again" in caplog.records[-1].getMessage()
    assert "48 held result(s) sent in order" not in caplog.text  # 49 went out: the held ones and the new
    assert "49 held result(s) sent in order" in caplog.text


def test_held_results_are_retried_without_a_new_result_once_the_backoff_is_due(clock: Clock) -> None:
    core = Core()
    outbox = ResultOutbox(core)
    core.down = True
    outbox.put("gg/r", {"frame-id": 1})
    outbox.put("gg/r", {"frame-id": 2})
    attempts = core.attempts
    assert not outbox.retry() and core.attempts == attempts  # not due yet: the core is not hammered
    core.down = False
    clock.now += 10.0
    assert outbox.retry()
    assert core.accepted == [1, 2] and len(outbox) == 0
    assert outbox.retry() and core.attempts == attempts + 2  # nothing held: no call


def test_a_long_outage_is_reminded_once_a_minute_not_at_every_attempt(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    core = Core()
    core.down = True
    outbox = ResultOutbox(core)
    with caplog.at_level(logging.WARNING, logger="component.outbox"):
        for frame in range(int(REMIND_SECONDS * 2.5 * 10)):  # 10 results a second for 150 s
            clock.now += 0.1
            outbox.put("gg/r", {"frame-id": frame})
            outbox.retry()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0].startswith("publish failed, 1 result(s) kept for retry")
    assert lines[1].startswith("outbox full (256 results)")  # once, though 1,244 were dropped
    assert lines[2].startswith("publishing still fails after 60 s")
    assert lines[3].startswith("publishing still fails after 120 s")
    assert "256 result(s) kept" in lines[3] and "dropped so far" in lines[3]
    assert outbox.dropped == 1500 - 256 and len(outbox) == 256


class DenyingCore(Core):
    """A core that refuses every result for good (a topic outside accessControl)."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.attempts += 1
        raise PublishDeniedError("PublishToIoTCore: not authorized for topic x")


def test_results_refused_for_good_are_counted_and_logged_once_a_minute_not_once_each(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = ResultOutbox(DenyingCore())
    with caplog.at_level(logging.DEBUG, logger="component.outbox"):
        for frame in range(1, 101):  # ten results a second for ten seconds
            outbox.put("x", {"frame-id": frame})
            clock.now += 0.1
        clock.now += REMIND_SECONDS
        outbox.put("x", {"frame-id": 101})
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors
    assert errors[0].startswith("result 1 dropped") and "(101 refused so far" in errors[1]
    assert outbox.counts()["refused_results"] == 101 and len(outbox) == 0
