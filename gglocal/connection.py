"""One authenticated client connection of the IPC server: ping, stream table, reader and writer threads.

A connection gets here from the handshake (gglocal.handshake) once its CONNECT named a known SVCUID; its
first message out is the CONNECT_ACK. The reader thread decodes frames and dispatches operations in order;
a writer thread drains a bounded outgoing queue so that a slow client never blocks publishers (events are
dropped and counted when the queue is full; responses wait up to ``SEND_TIMEOUT_S``). The reader waits
with ``poll()``, which, unlike ``select()``, works for any descriptor number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import socket
import threading
from collections.abc import Sequence
from typing import Protocol

from gglocal.codec import MAX_MESSAGE_LEN, EventMessage, MessageDecoder, encode_message
from gglocal.errors import FramingError
from gglocal.rpc import CONNECTION_ACCEPTED, OPERATION, MessageType, RpcMessage, Stream

logger = logging.getLogger(__name__)

POLL_S = 0.25
POLL_MS = int(POLL_S * 1000)
SEND_TIMEOUT_S = 5.0
OUTGOING_QUEUE = 1000


class ConnectionHandler(Protocol):
    """What a connection needs from the server: operation dispatch."""

    def open_stream(self, stream: Stream, request: RpcMessage) -> None: ...


def protocol_error(text: str) -> RpcMessage:
    """The PROTOCOL_ERROR sent before a connection is closed for breaking the protocol."""
    return RpcMessage(MessageType.PROTOCOL_ERROR, 0, 0, (), json.dumps({"message": text}).encode())


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class ServerConnection:
    """Serves one authenticated unix-socket connection until EOF, a protocol error, or close().

    ``decoder`` holds what the client sent after its CONNECT and ``backlog`` the messages already decoded
    from it; both are handled before anything else is read.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: ConnectionHandler,
        name: str,
        component: str,
        *,
        decoder: MessageDecoder | None = None,
        backlog: Sequence[EventMessage] = (),
    ) -> None:
        self.name = name
        self.component = component
        self.dropped_events = 0
        self._sock = sock
        self._handler = handler
        self._decoder = decoder or MessageDecoder()
        self._decoder.limit = MAX_MESSAGE_LEN
        self._backlog = tuple(backlog)
        self._outgoing: queue.Queue[RpcMessage | _Flush | None] = queue.Queue(OUTGOING_QUEUE)
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._last_stream_id = 0
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-write", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Accept the connection (CONNECT_ACK first) and start serving it."""
        self._sock.settimeout(SEND_TIMEOUT_S)
        logger.info("%s: component %s connected", self.name, self.component)
        self.send(RpcMessage(MessageType.CONNECT_ACK, CONNECTION_ACCEPTED))
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
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        try:
            for frame in self._backlog:
                self._handle(RpcMessage.from_event_message(frame))
            while not self._closed.is_set():
                if not poller.poll(POLL_MS):
                    continue
                data = self._sock.recv(65536)
                if not data:
                    logger.debug("%s: client closed the connection", self.name)
                    return
                for frame in self._decoder.feed(data):
                    self._handle(RpcMessage.from_event_message(frame))
        except FramingError as exc:
            logger.warning("%s: protocol error: %s", self.name, exc)
            self._protocol_error(str(exc))
        except (OSError, ValueError) as exc:
            if not self._closed.is_set():
                logger.info("%s: connection error: %s", self.name, exc)
        finally:
            self.close()

    # -- message handling ------------------------------------------------------------------------
    def _handle(self, message: RpcMessage) -> None:
        """Handle one message; FramingError ends the connection."""
        kind = message.message_type
        if kind == MessageType.PING:
            echo = tuple(h for h in message.headers if not h.name.startswith(":"))
            self.send(RpcMessage(MessageType.PING_RESPONSE, 0, 0, echo, message.payload))
            return
        if kind == MessageType.CONNECT:
            raise FramingError("CONNECT received twice")
        if kind in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR) and message.stream_id > 0:
            self._on_stream_message(message)
            return
        if kind == MessageType.PING_RESPONSE:
            return
        raise FramingError(f"unexpected {kind.name} on stream {message.stream_id}")

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
        stream = Stream(self, sid, operation, self.component)
        with self._streams_lock:
            self._streams[sid] = stream
        self._handler.open_stream(stream, message)

    def _protocol_error(self, text: str) -> None:
        self.send(protocol_error(text))
        flush = _Flush()
        try:
            self._outgoing.put(flush, timeout=SEND_TIMEOUT_S)
            flush.done.wait(SEND_TIMEOUT_S)
        except queue.Full:
            pass
