"""IoT Core bridge to a real MQTT broker (paho-mqtt 2.x), fed from the on-disk outbox.

A sender thread publishes the outbox head, waits for the broker's acknowledgement (QoS 1) or the write
(QoS 0), then removes it: one message in flight keeps the order across broker restarts. QoS 1 messages
interrupted by a disconnect are re-sent by paho after reconnecting, so delivery is at least once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from gglocal.iotcore import IotDelivery, IotMessage
from gglocal.outbox import Outbox
from gglocal.topics import topic_matches

logger = logging.getLogger(__name__)

POLL_S = 0.25
JOIN_TIMEOUT_S = 5.0


def parse_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) to a tuple; the port defaults to 1883."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        return address.strip("[]"), 1883
    if not port.isdigit():
        raise ValueError(f"invalid MQTT address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class MqttBridge:
    """IotCore implementation on a broker at ``host:port``; reconnects on its own."""

    def __init__(self, host: str, port: int, outbox: Outbox, *, client_id: str | None = None) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the MQTT bridge needs paho-mqtt: pip install 'paho-mqtt>=2.1,<3'") from exc
        self._mqtt = mqtt
        self.host, self.port = host, port
        self.outbox = outbox
        self.delivered = 0
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gglocal-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._acked: set[int] = set()
        self._acked_cond = threading.Condition()
        self._subs_lock = threading.Lock()
        self._subs: dict[int, tuple[str, int, IotDelivery]] = {}
        self._sub_ids = itertools.count(1)
        self._sender = threading.Thread(target=self._send_loop, name="gglocal-mqtt-sender", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        logger.info("bridging IoT Core to mqtt://%s:%d", self.host, self.port)
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._sender.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sender.is_alive():
            self._sender.join(JOIN_TIMEOUT_S)
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("MQTT bridge stopped (%d delivered, %d left in outbox)", self.delivered, len(self.outbox))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- IotCore ---------------------------------------------------------------------------------
    def publish(self, message: IotMessage) -> None:
        self.outbox.put(message)

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Callable[[], None]:
        sub_id = next(self._sub_ids)
        with self._subs_lock:
            first = all(f != topic_filter for f, _, _ in self._subs.values())
            self._subs[sub_id] = (topic_filter, qos, deliver)
        if first and self.connected:
            self._client.subscribe(topic_filter, qos)

        def unsubscribe() -> None:
            with self._subs_lock:
                self._subs.pop(sub_id, None)
                last = all(f != topic_filter for f, _, _ in self._subs.values())
            if last and self.connected:
                self._client.unsubscribe(topic_filter)

        return unsubscribe

    # -- paho callbacks (paho's thread) ----------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            logger.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        with self._subs_lock:
            filters = {f: q for f, q, _ in self._subs.values()}
        for topic_filter, qos in filters.items():
            client.subscribe(topic_filter, qos)
        logger.info("connected to broker %s:%d", self.host, self.port)
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self._connected.is_set() and not self._stop.is_set():
            logger.warning(
                "disconnected from broker %s:%d (%s); will reconnect", self.host, self.port, reason_code
            )
        self._connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._acked_cond:
            self._acked.add(mid)
            self._acked_cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        message = IotMessage(msg.topic, bytes(msg.payload), int(msg.qos), bool(msg.retain))
        with self._subs_lock:
            targets = [d for f, _, d in self._subs.values() if topic_matches(f, message.topic)]
        for deliver in targets:
            try:
                deliver(message)
            except Exception:
                logger.exception("delivering %s from IoT Core failed", message.topic)

    # -- sender ----------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            entry = self.outbox.head()
            if entry is None:
                self.outbox.wait_for_message(POLL_S)
                continue
            if not self._connected.wait(POLL_S):
                continue
            message = entry.message
            info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
            if message.qos == 0 and info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                continue  # not written: paho keeps no QoS 0 copy, so try again once reconnected
            if self._wait_acked(info.mid):
                self.outbox.ack(entry.seq)
                self.delivered += 1

    def _wait_acked(self, mid: int) -> bool:
        """Wait (until stop) for paho to report ``mid`` sent/acked; paho re-sends QoS 1 after reconnects."""
        with self._acked_cond:
            while mid not in self._acked:
                if self._stop.is_set():
                    return False
                self._acked_cond.wait(POLL_S)
            self._acked.discard(mid)
        return True
