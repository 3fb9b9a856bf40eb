"""The component's configuration feed: a burst of update events (nucleus lite: one per key, each key written
on its own) is read once it settles, never later than MAX_HOLD_S after its first event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from component import configfeed
from component.configfeed import ConfigurationFeed
from component.ipc import Subscription


class StubCore:
    """The core's side of the feed: a configuration and the update stream's callback."""

    def __init__(self, configuration: dict[str, Any]) -> None:
        self.configuration = configuration
        self.reads = 0
        self.on_event: Callable[[Any], None] = lambda event: None

    def get_configuration(self) -> dict[str, Any]:
        self.reads += 1
        return dict(self.configuration)

    def subscribe_to_configuration_updates(
        self, on_event: Callable[[Any], None], on_closed: Callable[[], None]
    ) -> Subscription:
        self.on_event = on_event
        return Subscription("configuration updates", None)

    def write(self, key: str, value: str) -> None:
        """One key written, then its event (as ggconfigd does)."""
        self.configuration[key] = value
        self.on_event(None)


class Clock:
    """configfeed's clock, moved by the test: no wall time, so a loaded machine changes nothing."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def started(core: StubCore) -> ConfigurationFeed:
    feed = ConfigurationFeed(core)  # type: ignore[arg-type]
    assert feed.start() == core.configuration
    return feed


def test_a_burst_of_key_events_is_read_once_when_it_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(configfeed, "time", clock)
    core = StubCore({"ModelVariant": "fp32", "BatchSize": "1"})
    feed = started(core)
    core.write("ModelVariant", "int8")
    clock.now += configfeed.SETTLE_S / 2
    assert feed.poll() is None  # the next key may be on its way
    core.write("BatchSize", "2")
    clock.now += configfeed.SETTLE_S / 2
    assert feed.poll() is None  # settling counts from the last event
    clock.now += configfeed.SETTLE_S
    assert feed.poll() == {"ModelVariant": "int8", "BatchSize": "2"}
    assert feed.poll() is None and core.reads == 2


def test_events_that_keep_coming_are_read_at_the_hold_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(configfeed, "time", clock)
    core = StubCore({"N": "0"})
    feed = started(core)
    first = clock.now
    read_at: list[float] = []
    for n in range(1, 40):
        core.write("N", str(n))
        if feed.poll() is not None:
            read_at.append(clock.now - first)
        clock.now += configfeed.SETTLE_S / 2
    assert read_at, "never read while events kept coming"
    step = configfeed.SETTLE_S / 2  # polled once per event
    assert configfeed.MAX_HOLD_S - step <= read_at[0] <= configfeed.MAX_HOLD_S + step, read_at
