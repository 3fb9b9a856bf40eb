"""The IPC handshake: what a connection may do before it is authenticated, and its hand-off after.

Until a valid CONNECT, a connection lives in the server's session loop (gglocal.netloop) and has no thread
of its own. It may send PING (answered) and CONNECT, in messages of at most ``max_message`` bytes (a
prelude announcing more is refused at once, before its body is read). Anything else, or a malformed frame,
is answered with PROTOCOL_ERROR and the connection is closed. A CONNECT with a known SVCUID hands the
connection to a ServerConnection (its own reader and writer threads), whose first message out is the
CONNECT_ACK; an unknown SVCUID, or a server at its connection limit, is answered with a CONNECT_ACK
without the accepted flag (the client raises AccessDeniedError) and the connection is closed once the
client has read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Protocol

from gglocal.codec import EventMessage, MessageDecoder, encode_message
from gglocal.connection import protocol_error
from gglocal.errors import FramingError
from gglocal.netloop import Verdict
from gglocal.rpc import PROTOCOL_VERSION, VERSION, MessageType, RpcMessage
from gglocal.throttle import LogThrottle

logger = logging.getLogger(__name__)


class HandshakeHost(Protocol):
    """What the handshake needs from the server."""

    def authenticate(self, token: str) -> str | None:
        """The component an SVCUID belongs to, or None."""

    def refuse_reason(self, component: str) -> str | None:
        """Why the server takes no more connections (its limit), or None when it takes this one."""

    def hand_off(
        self,
        sock: socket.socket,
        name: str,
        component: str,
        decoder: MessageDecoder,
        backlog: list[EventMessage],
    ) -> None:
        """Serve the authenticated connection from now on."""


@dataclass(frozen=True)
class HandshakeLogs:
    """Throttles shared by all handshakes of a server: a flood of bad clients writes a line per 10 s."""

    refusals: LogThrottle = field(default_factory=LogThrottle)
    protocol_errors: LogThrottle = field(default_factory=LogThrottle)


class Handshake:
    """One connection before authentication: a netloop Session."""

    def __init__(
        self, sock: socket.socket, name: str, host: HandshakeHost, max_message: int, logs: HandshakeLogs
    ) -> None:
        self.name = name
        self._sock = sock
        self._host = host
        self._logs = logs
        self._decoder = MessageDecoder(max_message)
        self._component: str | None = None
        self._backlog: list[EventMessage] = []

    # -- Session ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> Verdict:
        if not data:
            logger.debug("%s: closed by the client before CONNECT", self.name)
            return Verdict.CLOSE
        try:
            for frame in self._decoder.feed(data):
                if self._component is not None:
                    self._backlog.append(frame)  # sent right after CONNECT: the connection handles it
                    continue
                verdict = self._on_message(RpcMessage.from_event_message(frame))
                if verdict is not Verdict.READ_MORE and verdict is not Verdict.HANDED_OFF:
                    return verdict
        except FramingError as exc:
            if (held := self._logs.protocol_errors.ready()) is not None:
                logger.warning(
                    "%s: protocol error before CONNECT: %s; closing (%d more not logged)",
                    self.name,
                    exc,
                    held,
                )
            self._send(protocol_error(str(exc)))
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            return Verdict.LINGER
        return Verdict.HANDED_OFF if self._component is not None else Verdict.READ_MORE

    def close(self, reason: str) -> None:
        logger.debug("%s: closing an unauthenticated connection: %s", self.name, reason)

    def take_over(self) -> None:
        assert self._component is not None
        self._host.hand_off(self._sock, self.name, self._component, self._decoder, self._backlog)

    # -- messages --------------------------------------------------------------------------------
    def _on_message(self, message: RpcMessage) -> Verdict:
        kind = message.message_type
        if kind == MessageType.PING:
            echo = tuple(h for h in message.headers if not h.name.startswith(":"))
            pong = RpcMessage(MessageType.PING_RESPONSE, 0, 0, echo, message.payload)
            return Verdict.READ_MORE if self._send(pong) else Verdict.CLOSE
        if kind != MessageType.CONNECT:
            raise FramingError(f"{kind.name} received before CONNECT")
        if message.get(VERSION) != PROTOCOL_VERSION:
            raise FramingError(f"unsupported :version {message.get(VERSION)!r}, expected {PROTOCOL_VERSION}")
        token = _auth_token(message.payload)
        component = self._host.authenticate(token) if token else None
        if component is None:
            return self._refuse("refused connection with an unknown SVCUID")
        reason = self._host.refuse_reason(component)
        if reason is not None:
            return self._refuse(f"refused a connection of {component}: {reason}")
        self._component = component
        return Verdict.HANDED_OFF

    def _refuse(self, why: str) -> Verdict:
        if (held := self._logs.refusals.ready()) is not None:
            logger.warning("%s: %s (%d more refusals not logged)", self.name, why, held)
        self._send(RpcMessage(MessageType.CONNECT_ACK, 0))
        return Verdict.LINGER

    def _send(self, message: RpcMessage) -> bool:
        """Send without blocking the loop; False when the client's buffer cannot take the whole message."""
        data = encode_message(message.to_event_message())
        try:
            return self._sock.send(data) == len(data)
        except OSError:
            return False


def _auth_token(payload: bytes) -> str:
    try:
        body = json.loads(payload or b"{}")
    except (ValueError, RecursionError):
        return ""
    token = body.get("authToken") if isinstance(body, dict) else None
    return token if isinstance(token, str) else ""
