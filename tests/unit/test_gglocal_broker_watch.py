"""The broker watch warns early, then periodically, while the broker is away and messages wait; says when
it is back; stays quiet when nothing waits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from gglocal.broker_watch import BrokerWatch
from gglocal.iotcore import IotMessage
from gglocal.outbox import Outbox


class FakeLink:
    host = "127.0.0.1"
    port = 1

    def __init__(self) -> None:
        self.connected = False
        self.outbox = Outbox(":memory:", limit=5)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_warns_early_then_periodically_and_says_when_the_broker_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = FakeLink()
    watch = BrokerWatch(link, warn_after_s=0.1, warn_every_s=0.3, poll_s=0.02)
    with caplog.at_level(logging.INFO, logger="gglocal.broker_watch"):
        watch.start()
        try:
            time.sleep(0.3)
            assert watch.warnings == 0  # nothing waits: nothing to say
            for index in range(7):
                link.outbox.put(IotMessage("t", str(index).encode()))
            assert wait_until(lambda: watch.warnings >= 1)
            assert wait_until(lambda: watch.warnings >= 3)
            link.connected = True
            assert wait_until(lambda: "reachable again" in caplog.text)
        finally:
            watch.stop()
            link.outbox.close()
    warning = next(
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gglocal.broker_watch"
    ).getMessage()
    assert "MQTT broker 127.0.0.1:1 cannot be reached" in warning
    assert "5 message(s) wait in the outbox (limit 5 bytes, 2 QoS 0 dropped so far)" in warning
