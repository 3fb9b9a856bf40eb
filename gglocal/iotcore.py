"""The IoT Core seam: what IPC handlers need from "the cloud"; the stdout stand-in used without a broker."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

IotDelivery = Callable[["IotMessage"], None]


@dataclass(frozen=True)
class IotMessage:
    """One MQTT message to or from IoT Core."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class IotCore(Protocol):
    """IoT Core as IPC handlers see it. ``publish`` returns once the message is accepted (spooled, or written
    to the broker), or raises IpcOperationError (InvalidArgumentsError: IoT Core would refuse it;
    ServiceError: OutboxError, it cannot be stored now; MqttNotReadyError, lite's iotcored is not connected
    or has no room for one more unacknowledged QoS 1 publish)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def publish(self, message: IotMessage) -> None: ...

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Callable[[], None]: ...

    def status(self) -> dict[str, Any]:
        """What ``gglocal status`` shows about the cloud side: connection, counters, faults."""
        ...


def message_as_json(message: IotMessage) -> dict[str, Any]:
    """JSON form of a message: ``payload`` as UTF-8 text, or ``payloadBase64`` when it is not text."""
    line: dict[str, Any] = {"topic": message.topic, "qos": message.qos, "retain": message.retain}
    try:
        line["payload"] = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        line["payloadBase64"] = base64.b64encode(message.payload).decode()
    return line


class StdoutIotCore:
    """No broker configured: print each published message as one JSON line on stdout; nothing ever arrives."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.published = 0

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def publish(self, message: IotMessage) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(json.dumps(message_as_json(message)) + "\n")
            stream.flush()
            self.published += 1

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Callable[[], None]:
        return lambda: None

    def status(self) -> dict[str, Any]:
        return {"stdout": True, "published": self.published}


def status_lines(status: dict[str, Any]) -> list[str]:
    """``gglocal status`` text for ``Core.iot_status()``: the connection, then any outbox fault."""
    if not status:
        return []
    if status.get("stdout"):
        return [f"IoT Core: stdout ({status.get('published', 0)} published)"]
    connected = "connected" if status.get("connected") else "NOT connected"
    if status.get("spooling") is False:  # nucleus lite: nothing kept offline, a few in flight
        return [
            f"IoT Core: mqtt {status.get('broker')} {connected}, no spooler,"
            f" {status.get('delivered', 0)} delivered, {status.get('in_flight', 0)} in flight"
            f" (at most {status.get('max_in_flight')}); refused: {status.get('refused_not_connected', 0)}"
            f" while not connected, {status.get('refused_in_flight', 0)} with no room in flight;"
            f" {status.get('lost_in_flight', 0)} lost in flight"
        ]
    outbox = status.get("queue", {})
    lines = [
        f"IoT Core: mqtt {status.get('broker')} {connected},"
        f" {status.get('delivered', 0)} delivered, {outbox.get('queued', 0)} queued,"
        f" {outbox.get('undeliverable', 0)} undeliverable, {outbox.get('refused', 0)} refused"
    ]
    if outbox.get("fault"):
        lines.append(f"    Outbox fault: {outbox['fault']} (for {outbox.get('fault_for_s')} s)")
    return lines
