"""Event-stream RPC on top of the framing: message types, flags, and the stream that carries one operation.

Every frame carries ``:message-type``, ``:message-flags`` and ``:stream-id`` (all INT32). Connection-level
messages (PING, CONNECT, CONNECT_ACK, errors) use stream 0; an operation is one client-chosen stream
whose first APPLICATION_MESSAGE names it in the ``operation`` header. The server answers with
``<Op>Response`` first, then stream events; either side ends a stream with the TERMINATE_STREAM flag.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from gglocal.codec import EventMessage, Header, HeaderType
from gglocal.errors import FramingError

logger = logging.getLogger(__name__)

MESSAGE_TYPE = ":message-type"
MESSAGE_FLAGS = ":message-flags"
STREAM_ID = ":stream-id"
VERSION = ":version"
CONTENT_TYPE = ":content-type"
OPERATION = "operation"
SERVICE_MODEL_TYPE = "service-model-type"
JSON_CONTENT = "application/json"
PROTOCOL_VERSION = "0.1.0"
SERVICE_NAME = "aws.greengrass#GreengrassCoreIPC"
MODEL_PREFIX = "aws.greengrass#"


class MessageType(IntEnum):
    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


CONNECTION_ACCEPTED = 0x1
TERMINATE_STREAM = 0x2


@dataclass(frozen=True)
class RpcMessage:
    """One RPC message: the three protocol headers lifted out, the others kept in order."""

    message_type: MessageType
    flags: int = 0
    stream_id: int = 0
    headers: tuple[Header, ...] = ()
    payload: bytes = b""

    @property
    def terminates(self) -> bool:
        return bool(self.flags & TERMINATE_STREAM)

    def get(self, name: str) -> Any:
        return EventMessage(self.headers).get(name)

    def to_event_message(self) -> EventMessage:
        protocol = (
            Header.int32(MESSAGE_TYPE, int(self.message_type)),
            Header.int32(MESSAGE_FLAGS, self.flags),
            Header.int32(STREAM_ID, self.stream_id),
        )
        return EventMessage(self.headers + protocol, self.payload)

    @classmethod
    def from_event_message(cls, frame: EventMessage) -> RpcMessage:
        values: dict[str, int] = {}
        others: list[Header] = []
        for header in frame.headers:
            key = header.name.lower()
            if key in (MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID):
                if header.type != HeaderType.INT32:
                    raise FramingError(f"{header.name} must be INT32, got {header.type.name}")
                values[key] = int(header.value)
            else:
                others.append(header)
        missing = [n for n in (MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID) if n not in values]
        if missing:
            raise FramingError(f"frame lacks protocol headers {missing}")
        try:
            kind = MessageType(values[MESSAGE_TYPE])
        except ValueError as exc:
            raise FramingError(f"unknown message type {values[MESSAGE_TYPE]}") from exc
        return cls(kind, values[MESSAGE_FLAGS], values[STREAM_ID], tuple(others), frame.payload)


def json_message(stream_id: int, model_type: str, body: dict[str, Any], *, terminate: bool) -> RpcMessage:
    """An APPLICATION_MESSAGE with a modeled JSON shape, e.g. ``aws.greengrass#GetConfigurationResponse``."""
    headers = (Header.string(CONTENT_TYPE, JSON_CONTENT), Header.string(SERVICE_MODEL_TYPE, model_type))
    flags = TERMINATE_STREAM if terminate else 0
    return RpcMessage(MessageType.APPLICATION_MESSAGE, flags, stream_id, headers, json.dumps(body).encode())


def error_message(stream_id: int, error_name: str, message: str, *, text: bool = True) -> RpcMessage:
    """An APPLICATION_ERROR for a modeled error (``UnauthorizedError``, ...), terminating the stream.

    Without ``text`` the body has no ``message`` (nucleus lite sends only ``_message`` and ``_errorCode``,
    so the SDK's exception text is empty)."""
    body = {"_service": SERVICE_NAME, "_message": message, "_errorCode": error_name}
    if text:
        body["message"] = message
    headers = (
        Header.string(CONTENT_TYPE, JSON_CONTENT),
        Header.string(SERVICE_MODEL_TYPE, MODEL_PREFIX + error_name),
    )
    return RpcMessage(
        MessageType.APPLICATION_ERROR, TERMINATE_STREAM, stream_id, headers, json.dumps(body).encode()
    )


class MessageSink(Protocol):
    """Where a stream writes (the connection's outgoing queue)."""

    def send(self, message: RpcMessage, *, drop_if_full: bool = False) -> bool: ...

    def forget_stream(self, stream_id: int) -> None: ...


class Stream:
    """One operation's stream. The first frame out is the response; events wait until it is sent.

    Thread-safe: events may be sent from any thread (pub/sub, MQTT, config store). Close callbacks
    (dropping subscriptions) run exactly once, whichever side ends the stream.
    """

    def __init__(self, sink: MessageSink, stream_id: int, operation: str, component: str) -> None:
        self.stream_id = stream_id
        self.operation = operation
        self.component = component
        self._sink = sink
        self._lock = threading.Lock()
        self._responded = False
        self._closed = False
        self._pending: list[RpcMessage] = []
        self._on_close: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._closed:
                self._on_close.append(callback)
                return
        callback()

    def respond(self, model_type: str, body: dict[str, Any], *, terminate: bool) -> None:
        with self._lock:
            if self._closed or self._responded:
                return
            self._sink.send(json_message(self.stream_id, model_type, body, terminate=terminate))
            self._responded = True
            if not terminate:
                for pending in self._pending:
                    self._sink.send(pending, drop_if_full=True)
            self._pending.clear()
        if terminate:
            self.close()

    def send_event(self, model_type: str, body: dict[str, Any]) -> bool:
        """Queue an event; False when the stream is closed or the client is too slow (event dropped)."""
        message = json_message(self.stream_id, model_type, body, terminate=False)
        with self._lock:
            if self._closed:
                return False
            if not self._responded:
                self._pending.append(message)
                return True
            return self._sink.send(message, drop_if_full=True)

    def fail(self, error_name: str, message: str, *, text: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._sink.send(error_message(self.stream_id, error_name, message, text=text))
            self._responded = True
        self.close()

    def close(self) -> None:
        """Mark closed and run close callbacks once (no frame is sent; the caller terminated or was told)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            callbacks, self._on_close = self._on_close, []
        self._sink.forget_stream(self.stream_id)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("close callback of stream %s (%s) failed", self.stream_id, self.operation)
