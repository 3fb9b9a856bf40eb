"""Publishers behind one interface, in a registry keyed by name.

`ipc`: PublishToIoTCore (QoS 1) through the Greengrass core, on the component's one IPC connection
(component.ipc). `stdout`: one JSON line per message, `{"topic": ..., "payload": {...}}`, for running outside
Greengrass. `auto` picks ipc under Greengrass (SVCUID and the IPC socket variable set), stdout otherwise.

A publish raises PublishError when the message was not accepted and may be tried again, and one of its
two subclasses when it never will be: PublishDeniedError (the topic is outside accessControl) and
PublishRejectedError (the core refuses the topic or payload as invalid).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from agent_client.errors import CoreError, PublishError

from .ipc import CoreConnection, under_greengrass

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    name: str

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Hands one message to the transport; PublishError when it was not accepted."""
        ...

    def close(self) -> None: ...


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class StdoutPublisher:
    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"topic": topic, "payload": payload}, ensure_ascii=False)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except OSError as exc:
                raise PublishError(f"cannot write to stdout: {exc}") from exc

    def close(self) -> None:
        return None


class IpcPublisher:
    """PublishToIoTCore through the Greengrass core, on the shared IPC connection."""

    name = "ipc"

    def __init__(self, core: CoreConnection) -> None:
        self._core = core

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self._core.publish_to_iot_core(topic, encode(payload))
        except PublishError:
            raise
        except CoreError as exc:  # connection loss, timeout, the core's own error: all mean "not accepted"
            raise PublishError(str(exc)) from exc

    def close(self) -> None:
        return None  # the connection belongs to the component, which closes it last


PUBLISHERS: dict[str, Callable[[CoreConnection | None], Publisher]] = {
    "ipc": lambda core: IpcPublisher(core or CoreConnection()),
    "stdout": lambda core: StdoutPublisher(),
}


def open_publisher(name: str, core: CoreConnection | None = None) -> Publisher:
    """The publisher registered under name; `auto` = ipc under Greengrass, stdout elsewhere."""
    if name == "auto":
        name = "ipc" if under_greengrass() else "stdout"
    try:
        factory = PUBLISHERS[name]
    except KeyError:
        raise PublishError(
            f"unknown publisher {name!r}; choose one of auto, {', '.join(PUBLISHERS)}"
        ) from None
    logger.info("publishing with %s", name)
    return factory(core)
