"""One client connection of the IPC server: handshake, ping, stream table, reader and writer threads.

The reader thread decodes frames and dispatches operations in order; a writer thread drains a bounded
outgoing queue so that a slow client never blocks publishers (events are dropped and counted when the
queue is full; responses wait up to ``SEND_TIMEOUT_S``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import socket
import threading
from typing import Protocol

from gglocal.codec import MessageDecoder, encode_message
from gglocal.errors import FramingError
from gglocal.rpc import (
    CONNECTION_ACCEPTED,
    OPERATION,
    PROTOCOL_VERSION,
    VERSION,
    MessageType,
    RpcMessage,
    Stream,
)

logger = logging.getLogger(__name__)

POLL_S = 0.25
SEND_TIMEOUT_S = 5.0
REJECT_LINGER_S = 2.0
OUTGOING_QUEUE = 1000


class ConnectionHandler(Protocol):
    """What a connection needs from the server: authentication and operation dispatch."""

    def authenticate(self, token: str) -> str | None: ...

    def open_stream(self, stream: Stream, request: RpcMessage) -> None: ...


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class ServerConnection:
    """Serves one accepted unix-socket connection until EOF, a protocol error, or close()."""

    def __init__(self, sock: socket.socket, handler: ConnectionHandler, name: str) -> None:
        self.name = name
        self.component: str | None = None
        self.dropped_events = 0
        self._sock = sock
        self._handler = handler
        self._outgoing: queue.Queue[RpcMessage | _Flush | None] = queue.Queue(OUTGOING_QUEUE)
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._last_stream_id = 0
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-write", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._sock.settimeout(SEND_TIMEOUT_S)
        self._writer.start()
        self._reader.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(queue.Full):
            self._outgoing.put_nowait(None)

    def join(self, timeout: float) -> None:
        for thread in (self._reader, self._writer):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- MessageSink -----------------------------------------------------------------------------
    def send(self, message: RpcMessage, *, drop_if_full: bool = False) -> bool:
        if self._closed.is_set():
            return False
        try:
            if drop_if_full:
                self._outgoing.put_nowait(message)
            else:
                self._outgoing.put(message, timeout=SEND_TIMEOUT_S)
        except queue.Full:
            self.dropped_events += 1
            logger.warning(
                "%s: client too slow, dropped a frame (%d dropped)", self.name, self.dropped_events
            )
            return False
        return True

    def forget_stream(self, stream_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(stream_id, None)

    # -- threads ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._closed.is_set():
            try:
                item = self._outgoing.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, _Flush):
                item.done.set()
                continue
            try:
                self._sock.sendall(encode_message(item.to_event_message()))
            except OSError as exc:
                logger.info("%s: send failed (%s); closing", self.name, exc)
                self.close()
                return

    def _read_loop(self) -> None:
        decoder = MessageDecoder()
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([self._sock], [], [], POLL_S)
                if not ready:
                    continue
                data = self._sock.recv(65536)
                if not data:
                    logger.debug("%s: client closed the connection", self.name)
                    return
                for frame in decoder.feed(data):
                    if not self._handle(RpcMessage.from_event_message(frame)):
                        return
        except FramingError as exc:
            logger.warning("%s: protocol error: %s", self.name, exc)
            self._protocol_error(str(exc))
        except (OSError, ValueError) as exc:
            if not self._closed.is_set():
                logger.info("%s: connection error: %s", self.name, exc)
        finally:
            self.close()

    # -- message handling ------------------------------------------------------------------------
    def _handle(self, message: RpcMessage) -> bool:
        """Handle one message; False ends the connection."""
        kind = message.message_type
        if kind == MessageType.PING:
            echo = tuple(h for h in message.headers if not h.name.startswith(":"))
            self.send(RpcMessage(MessageType.PING_RESPONSE, 0, 0, echo, message.payload))
            return True
        if self.component is None:
            if kind != MessageType.CONNECT:
                raise FramingError(f"{kind.name} received before CONNECT")
            return self._connect(message)
        if kind == MessageType.CONNECT:
            raise FramingError("CONNECT received twice")
        if kind in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR) and message.stream_id > 0:
            self._on_stream_message(message)
            return True
        if kind == MessageType.PING_RESPONSE:
            return True
        raise FramingError(f"unexpected {kind.name} on stream {message.stream_id}")

    def _connect(self, message: RpcMessage) -> bool:
        if message.get(VERSION) != PROTOCOL_VERSION:
            raise FramingError(f"unsupported :version {message.get(VERSION)!r}, expected {PROTOCOL_VERSION}")
        try:
            token = str(json.loads(message.payload or b"{}").get("authToken", ""))
        except (ValueError, AttributeError):
            token = ""
        component = self._handler.authenticate(token) if token else None
        if component is None:
            logger.warning("%s: refused connection with an unknown SVCUID", self.name)
            self.send(RpcMessage(MessageType.CONNECT_ACK, 0))
            self._linger()
            return False
        self.component = component
        logger.info("%s: component %s connected", self.name, component)
        self.send(RpcMessage(MessageType.CONNECT_ACK, CONNECTION_ACCEPTED))
        return True

    def _linger(self) -> None:
        """After a refusal, flush the CONNECT_ACK and give the client time to close first."""
        flush = _Flush()
        try:
            self._outgoing.put(flush, timeout=SEND_TIMEOUT_S)
        except queue.Full:
            return
        flush.done.wait(REJECT_LINGER_S)
        ready, _, _ = select.select([self._sock], [], [], REJECT_LINGER_S)
        if ready:
            with contextlib.suppress(OSError):
                self._sock.recv(65536)

    def _on_stream_message(self, message: RpcMessage) -> None:
        sid = message.stream_id
        with self._streams_lock:
            stream = self._streams.get(sid)
        if stream is not None:
            if message.terminates:
                logger.debug("%s: client terminated stream %d (%s)", self.name, sid, stream.operation)
                stream.close()
            return
        if sid <= self._last_stream_id:
            return  # a stream we already closed; the client may still be ending it
        self._last_stream_id = sid
        operation = message.get(OPERATION)
        if not isinstance(operation, str) or message.terminates:
            raise FramingError(f"stream {sid} opened without an operation header")
        assert self.component is not None
        stream = Stream(self, sid, operation, self.component)
        with self._streams_lock:
            self._streams[sid] = stream
        self._handler.open_stream(stream, message)

    def _protocol_error(self, text: str) -> None:
        payload = json.dumps({"message": text}).encode()
        self.send(RpcMessage(MessageType.PROTOCOL_ERROR, 0, 0, (), payload))
        flush = _Flush()
        try:
            self._outgoing.put(flush, timeout=SEND_TIMEOUT_S)
            flush.done.wait(SEND_TIMEOUT_S)
        except queue.Full:
            pass
