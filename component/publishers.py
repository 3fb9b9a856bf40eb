"""Publishers behind one interface, in a registry keyed by name.

`ipc`: PublishToIoTCore (QoS 1) through the Greengrass core with awsiotsdk's GreengrassCoreIPCClientV2,
reconnecting on the next call after a failure. `stdout`: one JSON line per message,
`{"topic": ..., "payload": {...}}`, for running outside Greengrass. `auto` picks ipc when the core's
environment is present (SVCUID and the IPC socket variable), stdout otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from agent_client.errors import PublishDeniedError, PublishError

logger = logging.getLogger(__name__)

IPC_SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"


class Publisher(Protocol):
    name: str

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Hands one message to the transport; PublishError when it was not accepted."""
        ...

    def close(self) -> None: ...


def under_greengrass() -> bool:
    return bool(os.environ.get("SVCUID")) and bool(os.environ.get(IPC_SOCKET_ENV))


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
    """PublishToIoTCore through the Greengrass core. One IPC connection, re-made after a failure."""

    name = "ipc"

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._connect()

    def _connect(self) -> Any:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        try:
            self._client = GreengrassCoreIPCClientV2()
        except Exception as exc:  # awscrt raises its own untyped errors for connection failures
            raise PublishError(
                f"cannot connect to the Greengrass core over IPC ({exc}); run inside a Greengrass "
                f"component or use Publisher=stdout"
            ) from exc
        return self._client

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        from awsiot.greengrasscoreipc.model import QOS, UnauthorizedError

        with self._lock:
            client = self._client or self._connect()
            try:
                future = client.publish_to_iot_core_async(
                    topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=encode(payload)
                )
                future.result(timeout=self._timeout)
            except UnauthorizedError as exc:
                raise PublishDeniedError(
                    f"the core refused PublishToIoTCore on {topic!r}: add the topic to the component's "
                    f"accessControl (aws.greengrass.ipc.mqttproxy) or publish elsewhere ({exc})"
                ) from exc
            except Exception as exc:  # connection loss, timeout, core errors: all mean "not accepted"
                self._drop_client()
                raise PublishError(
                    f"PublishToIoTCore on {topic!r} failed: {type(exc).__name__}: {exc}"
                ) from exc

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a broken connection may fail again; nothing left to do
                logger.debug("closing the IPC client failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._drop_client()


PUBLISHERS: dict[str, Callable[[], Publisher]] = {"ipc": IpcPublisher, "stdout": StdoutPublisher}


def open_publisher(name: str) -> Publisher:
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
    return factory()
