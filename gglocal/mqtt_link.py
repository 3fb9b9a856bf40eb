"""One paho-mqtt 2.x connection to the broker standing in for IoT Core, shared by both IoT Core bridges.

``MqttLink`` connects in the background and reconnects by itself (1-2 s apart), subscribes again to every
filter after each connect, and hands the bridges two events: a connection was made (``on_session``) and
paho reports a message sent or acknowledged (``on_published(mid)``).

``clean_sessions`` follows nucleus lite's iotcored (coreMQTT, ``cleanSession = true``): when a connection
ends, the paho client is replaced by a new one, so nothing it held unacknowledged is sent again on the next
connection. Without it (the Java nucleus's spooling bridge) paho re-sends QoS 1 messages after a reconnect.
Callbacks of a replaced client are ignored.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gglocal.iotcore import IotDelivery, IotMessage
from ggrules.topics import topic_matches

logger = logging.getLogger(__name__)

KEEPALIVE_S = 30


@dataclass(frozen=True)
class _NotSent:
    """What ``publish`` answers for a message it did not hand to paho (``rc`` only, as paho's info)."""

    rc: int
    mid: int = 0


class MqttLink:
    """The paho client (replaced when a session ends, or on ``replace_client()``) and the subscriptions."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        clean_sessions: bool = False,
        on_session: Callable[[], None] | None = None,
        on_published: Callable[[int], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the MQTT bridge needs paho-mqtt: pip install 'paho-mqtt>=2.1,<3'") from exc
        self._mqtt = mqtt
        self.host, self.port = host, port
        self.client_id = client_id
        self.clean_sessions = clean_sessions
        self._on_session = on_session or (lambda: None)
        self._on_published = on_published or (lambda mid: None)
        self._on_lost = on_lost or (lambda: None)
        self._client_lock = threading.Lock()
        self._client = self._new_client()
        self.generation = 0
        """How many times the client was replaced: what was published under an older one was dropped."""
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._subs_lock = threading.Lock()
        self._subs: dict[int, tuple[str, int, IotDelivery]] = {}
        self._sub_ids = itertools.count(1)

    @property
    def success(self) -> int:
        """paho's return code of a publish written (or queued) on a live connection."""
        return int(self._mqtt.MQTT_ERR_SUCCESS)

    def _new_client(self) -> Any:
        mqtt = self._mqtt
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        logger.info("bridging IoT Core to mqtt://%s:%d", self.host, self.port)
        with self._client_lock:
            self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
            self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        with self._client_lock:  # a replacement under way finishes first; none starts after this
            client = self._client
        client.disconnect()
        client.loop_stop()  # outside the lock: its thread may be waiting for it in on_disconnect
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def replace_client(self) -> None:
        """A new paho client on a new connection; the old one, and all it held, is dropped."""
        with self._client_lock:
            if self._stopping.is_set():
                return
            old, self._client = self._client, self._new_client()
            self.generation += 1
            self._connected.clear()
            self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
            self._client.loop_start()
        old.disconnect()
        old.loop_stop()  # from the old client's own thread (its on_disconnect) this only ends its loop

    # -- publish / subscribe ---------------------------------------------------------------------
    def publish(self, message: IotMessage) -> tuple[Any, int]:
        """paho's MQTTMessageInfo (``mid``, ``rc``, ``is_published()``) and the ``generation`` of the client
        that took it; ValueError when paho refuses the message itself."""
        with self._client_lock:
            if self.clean_sessions and not self._connected.is_set():
                # not handed to paho: it would keep a QoS 1 copy and send it on the next connection
                return _NotSent(int(self._mqtt.MQTT_ERR_NO_CONN)), self.generation
            info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
            return info, self.generation

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Callable[[], None]:
        sub_id = next(self._sub_ids)
        with self._subs_lock:
            first = all(f != topic_filter for f, _, _ in self._subs.values())
            self._subs[sub_id] = (topic_filter, qos, deliver)
        if first and self.connected:
            with self._client_lock:
                self._client.subscribe(topic_filter, qos)

        def unsubscribe() -> None:
            with self._subs_lock:
                self._subs.pop(sub_id, None)
                last = all(f != topic_filter for f, _, _ in self._subs.values())
            if last and self.connected:
                with self._client_lock:
                    self._client.unsubscribe(topic_filter)

        return unsubscribe

    # -- paho callbacks (the current client's thread) --------------------------------------------
    def _current(self, client: Any) -> bool:
        return client is self._client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not self._current(client):
            return
        if reason_code.is_failure:
            logger.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        with self._subs_lock:
            filters = {f: q for f, q, _ in self._subs.values()}
        for topic_filter, qos in filters.items():
            client.subscribe(topic_filter, qos)
        logger.info("connected to broker %s:%d", self.host, self.port)
        self._on_session()
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if not self._current(client):
            return
        if self._connected.is_set() and not self._stopping.is_set():
            logger.warning(
                "disconnected from broker %s:%d (%s); will reconnect", self.host, self.port, reason_code
            )
        was_up = self._connected.is_set()
        self._connected.clear()
        if was_up:
            self._on_lost()
        # a connection that never came up held nothing: paho retries it with its own delay (replacing the
        # client at once would retry a refusing broker in a tight loop)
        if self.clean_sessions and was_up and not self._stopping.is_set():
            self.replace_client()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if self._current(client):
            self._on_published(mid)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        message = IotMessage(msg.topic, bytes(msg.payload), int(msg.qos), bool(msg.retain))
        with self._subs_lock:
            targets = [d for f, _, d in self._subs.values() if topic_matches(f, message.topic)]
        for deliver in targets:
            try:
                deliver(message)
            except Exception:
                logger.exception("delivering %s from IoT Core failed", message.topic)


class OnLink:
    """What a bridge answers straight from its connection (``_link``)."""

    _link: MqttLink

    @property
    def connected(self) -> bool:
        return self._link.connected

    def wait_connected(self, timeout: float) -> bool:
        return self._link.wait_connected(timeout)

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Callable[[], None]:
        return self._link.subscribe(topic_filter, qos, deliver)
