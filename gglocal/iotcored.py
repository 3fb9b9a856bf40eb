"""Nucleus lite's IoT Core side (iotcored, 2.6.0) on a real MQTT broker: no spooler.

What a component can tell, measured on nucleus lite 2.6.0 and read in iotcored's source
(``modules/iotcored/src/mqtt.c``: coreMQTT with ``cleanSession = true``, 10 outgoing publish records, a
15,000-byte store for unacknowledged packets):

- PublishToIoTCore hands the message to the MQTT client at once and is answered once it is written, not
  once the broker acknowledged it;
- while the MQTT connection is down it is answered ``ServiceError`` (lite: MQTT status not connected) and
  nothing is kept: it is never sent later;
- at most ``max_in_flight`` QoS 1 publishes (and ``in_flight_bytes`` of them, serialized) wait for their
  acknowledgement at once; one more is answered ``ServiceError`` at once (lite: no memory), not queued;
- each connection is a clean session: what was unacknowledged when it ended is not sent again (counted as
  ``lost_in_flight``).

A message IoT Core would refuse for good (:class:`gglocal.mqtt_bridge.MqttLimits`) is refused with
InvalidArgumentsError, as on the spooling bridge.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from gglocal.errors import IpcOperationError, MqttNotReadyError
from gglocal.iotcore import IotMessage
from gglocal.mqtt_bridge import MqttLimits
from gglocal.mqtt_link import MqttLink, OnLink
from gglocal.throttle import LogThrottle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlight:
    """One QoS 1 publish written and not yet acknowledged."""

    info: Any  # paho's MQTTMessageInfo: is_published() once the broker acknowledged it
    generation: int  # the link's client that wrote it; a newer one means its session ended
    size: int  # serialized bytes, as iotcored stores them for a retransmit


def packet_bytes(message: IotMessage) -> int:
    """The size of the MQTT 3.1.1 PUBLISH packet that carries ``message``."""
    remaining = 2 + len(message.topic.encode("utf-8")) + (2 if message.qos else 0) + len(message.payload)
    length_bytes = 1
    while remaining >= 128**length_bytes and length_bytes < 4:
        length_bytes += 1
    return 1 + length_bytes + remaining


class IotcoredBridge(OnLink):
    """IotCore implementation that publishes straight to the broker at ``host:port``, as lite's iotcored."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        max_in_flight: int | None = 10,
        in_flight_bytes: int | None = 15000,
        limits: MqttLimits | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.max_in_flight = max_in_flight
        self.in_flight_bytes = in_flight_bytes
        self.limits = limits or MqttLimits()
        self.delivered = 0  # QoS 1 acknowledged, QoS 0 written
        self.refused_not_connected = 0
        self.refused_in_flight = 0
        self.lost_in_flight = 0
        self._link = MqttLink(host, port, client_id=client_id, clean_sessions=True)
        self._lock = threading.Lock()  # never taken by a paho callback: paho holds its own locks there
        self._in_flight: list[InFlight] = []
        self._refusal_log = LogThrottle()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._link.start()

    def stop(self) -> None:
        self._link.stop()
        with self._lock:
            self._settle()
        logger.info(
            "MQTT bridge stopped (%d delivered, %d refused while not connected, %d refused with no room in"
            " flight, %d lost in flight)",
            self.delivered,
            self.refused_not_connected,
            self.refused_in_flight,
            self.lost_in_flight,
        )

    def status(self) -> dict[str, Any]:
        """The connection, what is in flight and the counters of publishes refused or lost."""
        with self._lock:
            self._settle()
            in_flight = len(self._in_flight)
        return {
            "broker": f"{self.host}:{self.port}",
            "connected": self.connected,
            "spooling": False,
            "delivered": self.delivered,
            "in_flight": in_flight,
            "max_in_flight": self.max_in_flight,
            "refused_not_connected": self.refused_not_connected,
            "refused_in_flight": self.refused_in_flight,
            "lost_in_flight": self.lost_in_flight,
        }

    # -- IotCore ---------------------------------------------------------------------------------
    def publish(self, message: IotMessage) -> None:
        """Write the message now: InvalidArgumentsError for what IoT Core would refuse, MqttNotReadyError
        (ServiceError) when not connected or with no room for one more unacknowledged QoS 1 publish."""
        if problem := self.limits.refusal(message):
            raise IpcOperationError("InvalidArgumentsError", f"IoT Core would refuse this message: {problem}")
        size = packet_bytes(message)
        with self._lock:  # one publish at a time, as iotcored's one MQTT context
            self._settle()
            if not self._link.connected:
                self._refuse_not_connected(message)
            if message.qos == 1 and (room := self._no_room(size)):
                self.refused_in_flight += 1
                self._refuse(room, message)
            try:
                info, generation = self._link.publish(message)
            except ValueError as exc:  # paho refuses it (invalid topic, payload too large)
                raise IpcOperationError("InvalidArgumentsError", f"paho refused it: {exc}") from exc
            if info.rc != self._link.success:  # the connection ended a moment ago
                self._refuse_not_connected(message)
            if message.qos == 1:
                self._in_flight.append(InFlight(info, generation, size))
            else:
                self.delivered += 1

    # -- in flight (called holding the lock) -----------------------------------------------------
    def _settle(self) -> None:
        """Forget what was acknowledged (delivered) and what a session that ended held (lost)."""
        waiting: list[InFlight] = []
        lost = 0
        for entry in self._in_flight:
            if entry.info.is_published():
                self.delivered += 1
            elif entry.generation != self._link.generation:
                lost += 1
            else:
                waiting.append(entry)
        self._in_flight = waiting
        if lost:
            self.lost_in_flight += lost
            logger.warning(
                "%d unacknowledged QoS 1 publish(es) lost with the MQTT session that ended (clean session)",
                lost,
            )

    def _no_room(self, size: int) -> str | None:
        if self.max_in_flight is not None and len(self._in_flight) >= self.max_in_flight:
            return f"{len(self._in_flight)} QoS 1 publishes wait for their acknowledgement, the most it holds"
        held = sum(e.size for e in self._in_flight)
        if self.in_flight_bytes is not None and held + size > self.in_flight_bytes:
            return (
                f"{held} bytes of QoS 1 publishes wait for their acknowledgement; {size} more do not fit"
                f" in {self.in_flight_bytes}"
            )
        return None

    def _refuse_not_connected(self, message: IotMessage) -> None:
        self.refused_not_connected += 1
        self._refuse("the MQTT connection to IoT Core is down (not connected)", message)

    def _refuse(self, why: str, message: IotMessage) -> None:
        if (held := self._refusal_log.ready()) is not None:
            logger.warning(
                "PublishToIoTCore on %s refused (ServiceError): %s; nothing is kept (%d more not logged)",
                message.topic,
                why,
                held,
            )
        raise MqttNotReadyError(f"PublishToIoTCore refused: {why}; the message was not accepted")
