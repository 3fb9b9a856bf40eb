"""Fixtures for the local Greengrass stand-in: a real mosquitto on a free port, a paho subscriber,
an IPC server on a temp unix socket, and real awsiotsdk IPC clients connected to it.

Load with ``pytest_plugins = ["tests.gglocal_fixtures"]`` (test modules or the root conftest).
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gglocal.server import IpcServer, short_socket_path

BROKER_START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto broker on 127.0.0.1 only, with persistence so a restart keeps offline sessions."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            pytest.fail("mosquitto is not installed: run scripts/test, or apt-get install -y mosquitto")
        self.binary = binary
        self.port = free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            # as root, mosquitto would drop to user "mosquitto", which cannot write to the workdir
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _port_open(self.port):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = (
            (self.workdir / "mosquitto.log").read_text() if (self.workdir / "mosquitto.log").exists() else ""
        )
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}: {log[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto on a free port (``.address``; ``.stop()`` and ``.start()`` restart it)."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int


class MqttSubscriber:
    """A paho client with a persistent session that records every message on its topics."""

    def __init__(self, broker: Mosquitto, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        ready = self._subscribed if topics else self._connected
        if not ready.wait(BROKER_START_TIMEOUT_S):
            raise RuntimeError("test MQTT client did not connect and subscribe in time")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), int(msg.qos)))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """Wait until ``count`` messages arrived (or the timeout passed); returns what arrived."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def wait_until(self, predicate: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """Wait until ``predicate(messages)`` holds (or the timeout passed); returns what arrived."""
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.messages), timeout)
            return list(self.messages)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
