"""The IPC server: a unix socket speaking event-stream RPC.

A new connection waits in a session loop (one thread, epoll) until its CONNECT authenticates it
(gglocal.handshake); only then does it get its reader and writer threads (gglocal.connection). The
bounds on what unauthenticated clients may hold are :class:`ServerLimits`.

Usable alone in tests::

    server = IpcServer(tmp_path / "ipc.sock")
    server.start()
    svcuid = server.register_component("com.example.Pub", {"accessControl": {...}})
    # run a GreengrassCoreIPCClientV2 with SVCUID=svcuid and
    # AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT=server.socket_path
    server.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import string
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_client.sockets import MAX_SOCKET_PATH, bind_owner_only
from gglocal.codec import EventMessage, MessageDecoder
from gglocal.configstore import ConfigStore
from gglocal.connection import ServerConnection
from gglocal.handshake import Handshake, HandshakeLogs
from gglocal.iotcore import IotCore, StdoutIotCore
from gglocal.netloop import SessionLimits, SessionLoop
from gglocal.nucleus import CLASSIC, NucleusProfile
from gglocal.operations import Operations, StateSink
from gglocal.pubsub import PubSubBus
from gglocal.rpc import RpcMessage, Stream

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 512


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what clients may hold in the IPC server.

    ``max_connections`` authenticated connections (two threads each); beyond, a CONNECT is refused.
    ``max_unauthenticated`` connections that have not sent a valid CONNECT yet; beyond, the oldest is
    closed. ``auth_timeout_s``: a connection without a valid CONNECT by then is closed (the real client
    sends it at once and waits 10 s for the answer). ``max_preauth_bytes``: what a connection may send
    before it is authenticated (a CONNECT is a few hundred bytes; the protocol's 24 MiB messages are for
    authenticated connections only).
    """

    max_connections: int = 1024
    max_unauthenticated: int = 256
    auth_timeout_s: float = 5.0
    max_preauth_bytes: int = 64 * 1024

    def session_limits(self) -> SessionLimits:
        return SessionLimits(self.max_unauthenticated, self.auth_timeout_s, self.max_preauth_bytes)


def short_socket_path(directory: Path, name: str) -> Path:
    """``directory/name`` when it fits a unix socket address (107 bytes), else a new short temp dir."""
    candidate = Path(directory).absolute() / name
    if len(os.fsencode(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    return Path(tempfile.mkdtemp(prefix="gg")) / name


def new_svcuid() -> str:
    """16 random upper-case letters, as the nucleus makes them."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(16))


class IpcServer:
    """Greengrass IPC server for registered components; see the module docstring."""

    def __init__(
        self,
        socket_path: Path | str,
        *,
        config: ConfigStore | None = None,
        bus: PubSubBus | None = None,
        iot: IotCore | None = None,
        on_state: StateSink | None = None,
        nucleus: NucleusProfile = CLASSIC,
        limits: ServerLimits | None = None,
        thing_name: str | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.limits = limits or ServerLimits()
        self.refused_at_limit = 0
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"unix socket path {self.socket_path} is longer than {MAX_SOCKET_PATH} bytes")
        self.config = config or ConfigStore()
        self.bus = bus or PubSubBus()
        self.iot: IotCore = iot or StdoutIotCore()
        self.reported_states: dict[str, str] = {}
        self._on_state = on_state
        self.operations = Operations(
            self.config, self.bus, self.iot, self._state_reported, nucleus, thing_name
        )
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._listener: socket.socket | None = None
        self._loop: SessionLoop | None = None
        self._handshake_logs = HandshakeLogs()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._listener = bind_owner_only(self.socket_path, LISTEN_BACKLOG)
        self._loop = SessionLoop(
            self._listener, self._open_handshake, self.limits.session_limits(), name="ipc"
        )
        self._loop.start()
        logger.info("IPC server listening on %s", self.socket_path)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        for connection in connections:
            connection.join(JOIN_TIMEOUT_S)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        logger.info("IPC server stopped")

    def __enter__(self) -> IpcServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- components ------------------------------------------------------------------------------
    def register_component(
        self,
        name: str,
        configuration: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> str:
        """Allow ``name`` to connect; returns a new SVCUID. A given configuration replaces the stored one."""
        if configuration is not None or not self.config.has(name):
            self.config.register(name, defaults or configuration or {}, configuration)
        token = new_svcuid()
        with self._lock:
            self._tokens[token] = name
        return token

    def unregister_component(self, name: str) -> None:
        """Forget the component's tokens (new connections are refused; open ones stay)."""
        with self._lock:
            self._tokens = {t: c for t, c in self._tokens.items() if c != name}

    @property
    def connection_count(self) -> int:
        """Authenticated connections still open."""
        with self._lock:
            return sum(1 for c in self._connections if not c.closed)

    @property
    def unauthenticated_count(self) -> int:
        """Connections that have not completed the handshake yet."""
        return self._loop.sessions if self._loop is not None else 0

    # -- HandshakeHost ---------------------------------------------------------------------------
    def _open_handshake(self, sock: socket.socket, name: str) -> Handshake:
        return Handshake(sock, name, self, self.limits.max_preauth_bytes, self._handshake_logs)

    def authenticate(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def refuse_reason(self, component: str) -> str | None:
        open_now = self.connection_count
        if open_now < self.limits.max_connections:
            return None
        self.refused_at_limit += 1
        return (
            f"{open_now} IPC connections are open, the limit (ServerLimits.max_connections); "
            f"{self.refused_at_limit} refused so far"
        )

    def hand_off(
        self,
        sock: socket.socket,
        name: str,
        component: str,
        decoder: MessageDecoder,
        backlog: list[EventMessage],
    ) -> None:
        sock.setblocking(True)
        connection = ServerConnection(sock, self, name, component, decoder=decoder, backlog=backlog)
        with self._lock:
            self._connections = [c for c in self._connections if not c.closed]
            self._connections.append(connection)
        connection.start()

    # -- ConnectionHandler -----------------------------------------------------------------------
    def open_stream(self, stream: Stream, request: RpcMessage) -> None:
        self.operations.open_stream(stream, request)

    def _state_reported(self, component: str, state: str) -> None:
        self.reported_states[component] = state
        if self._on_state is not None:
            self._on_state(component, state)
