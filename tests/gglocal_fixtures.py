"""Fixtures for the local Greengrass stand-in: a real mosquitto on a free port, a paho subscriber,
an IPC server on a temp unix socket, real awsiotsdk IPC clients connected to it, a core per profile, and
small helpers for hand-written recipes.

Load with ``pytest_plugins = ["tests.gglocal_fixtures"]`` (test modules or the root conftest).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from gglocal import Core
from gglocal.server import IpcServer, short_socket_path

from .gglocal_helpers import FAST_POLICY
from .mqtt_broker import Mosquitto, MqttSubscriber


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto on a free port (``.address``; ``.stop()`` and ``.start()`` restart it)."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_subscriber(mosquitto: Mosquitto) -> Iterator[Callable[[list[str]], MqttSubscriber]]:
    """Factory: ``mqtt_subscriber(["topic/#"])`` returns a connected, subscribed recorder."""
    made: list[MqttSubscriber] = []

    def make(topics: list[str]) -> MqttSubscriber:
        subscriber = MqttSubscriber(mosquitto, topics)
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()


@pytest.fixture
def ipc_socket_path(tmp_path: Path) -> Path:
    """A unix socket path short enough for AF_UNIX (falls back to a short temp dir)."""
    return short_socket_path(tmp_path, "ipc.sock")


@pytest.fixture
def ipc_server(ipc_socket_path: Path) -> Iterator[IpcServer]:
    """A started IpcServer (stdout IoT Core unless a test builds its own) on a temp socket."""
    server = IpcServer(ipc_socket_path)
    server.start()
    yield server
    server.stop()
    if ipc_socket_path.parent.name.startswith("gg"):
        shutil.rmtree(ipc_socket_path.parent, ignore_errors=True)


@pytest.fixture
def ipc_client() -> Iterator[Callable[[IpcServer, str], Any]]:
    """Factory: ``ipc_client(server, svcuid)`` -> a connected GreengrassCoreIPCClientV2 (closed after)."""
    from awsiot.greengrasscoreipc import connect
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    clients: list[Any] = []

    def make(server: IpcServer, svcuid: str) -> Any:
        raw = connect(ipc_socket=str(server.socket_path), authtoken=svcuid, timeout=10.0)
        client = GreengrassCoreIPCClientV2(client=raw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):  # the test may have closed it, or the server went away first
            client.close().result(5)


@pytest.fixture
def core_for() -> Iterator[Callable[..., Core]]:
    """Factory: ``core_for("lite", **options)`` -> a started Core in a short root under /tmp (so the IPC
    socket sits at ``<root>/<socket name>``), stdout IoT Core into /dev/null; stopped and removed after."""
    made: list[tuple[Core, Path, TextIO]] = []

    def make(nucleus: str, **options: Any) -> Core:
        root = Path(tempfile.mkdtemp(prefix="ggp", dir="/tmp"))
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed after the test
        options.setdefault("restart_policy", FAST_POLICY)
        core = Core(root, nucleus=nucleus, stdout=sink, **options)
        core.start()
        made.append((core, root, sink))
        return core

    yield make
    for core, root, sink in made:
        core.stop()
        sink.close()
        shutil.rmtree(root, ignore_errors=True)
