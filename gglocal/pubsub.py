"""Local publish/subscribe between components (IPC PublishToTopic / SubscribeToTopic)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ggrules.topics import topic_matches

logger = logging.getLogger(__name__)

RECEIVE_ALL = "RECEIVE_ALL_MESSAGES"
RECEIVE_FROM_OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"


@dataclass(frozen=True)
class LocalMessage:
    """A local bus message: exactly one of ``json_message`` / ``binary_message`` (base64 text) is set."""

    topic: str
    source: str
    json_message: Any = None
    binary_message: str | None = None


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    component: str
    receive_mode: str
    deliver: Callable[[LocalMessage], None]


class PubSubBus:
    """Fan-out by MQTT-style filter; delivery callbacks run on the publisher's thread and must not block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)
        self.delivery_failures = 0

    def subscribe(
        self,
        topic_filter: str,
        component: str,
        deliver: Callable[[LocalMessage], None],
        receive_mode: str = RECEIVE_ALL,
    ) -> Callable[[], None]:
        """Register a subscription; returns the function that removes it."""
        sub_id = next(self._ids)
        with self._lock:
            self._subscriptions[sub_id] = _Subscription(topic_filter, component, receive_mode, deliver)

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions.pop(sub_id, None)

        return unsubscribe

    def publish(self, message: LocalMessage) -> int:
        """Deliver to every matching subscription; returns how many received it."""
        with self._lock:
            targets = [
                s
                for s in self._subscriptions.values()
                if topic_matches(s.topic_filter, message.topic)
                and not (s.receive_mode == RECEIVE_FROM_OTHERS and s.component == message.source)
            ]
        delivered = 0
        for subscription in targets:
            try:
                subscription.deliver(message)
                delivered += 1
            except Exception:
                self.delivery_failures += 1
                logger.exception(
                    "delivery of %s to %s failed (%d failures)",
                    message.topic,
                    subscription.component,
                    self.delivery_failures,
                )
        return delivered

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscriptions)
