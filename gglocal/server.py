"""The IPC server: a unix socket speaking event-stream RPC, one thread pair per connection.

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
import select
import socket
import string
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_client.sockets import MAX_SOCKET_PATH, bind_owner_only
from gglocal.configstore import ConfigStore
from gglocal.connection import ServerConnection
from gglocal.iotcore import IotCore, StdoutIotCore
from gglocal.operations import Operations, StateSink
from gglocal.pubsub import PubSubBus
from gglocal.rpc import RpcMessage, Stream

logger = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.25
JOIN_TIMEOUT_S = 5.0


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
    ) -> None:
        self.socket_path = Path(socket_path)
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"unix socket path {self.socket_path} is longer than {MAX_SOCKET_PATH} bytes")
        self.config = config or ConfigStore()
        self.bus = bus or PubSubBus()
        self.iot: IotCore = iot or StdoutIotCore()
        self.reported_states: dict[str, str] = {}
        self._on_state = on_state
        self.operations = Operations(self.config, self.bus, self.iot, self._state_reported)
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._listener = bind_owner_only(self.socket_path, 64)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="gglocal-ipc-accept", daemon=True
        )
        self._accept_thread.start()
        logger.info("IPC server listening on %s", self.socket_path)

    def stop(self) -> None:
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT_S)
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
        with self._lock:
            return sum(1 for c in self._connections if not c.closed)

    # -- ConnectionHandler -----------------------------------------------------------------------
    def authenticate(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def open_stream(self, stream: Stream, request: RpcMessage) -> None:
        self.operations.open_stream(stream, request)

    def _state_reported(self, component: str, state: str) -> None:
        self.reported_states[component] = state
        if self._on_state is not None:
            self._on_state(component, state)

    # -- accept loop -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], ACCEPT_POLL_S)
                if not ready:
                    continue
                sock, _ = self._listener.accept()
            except OSError as exc:
                if not self._stop.is_set():
                    logger.error("IPC accept failed: %s", exc)
                return
            self._counter += 1
            connection = ServerConnection(sock, self, f"ipc-{self._counter}")
            with self._lock:
                self._connections = [c for c in self._connections if not c.closed]
                self._connections.append(connection)
            connection.start()
