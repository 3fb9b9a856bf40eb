"""A real mosquitto broker on a free loopback port and a recording paho subscriber, for tests."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
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
            f"log_dest file {workdir}/mosquitto.log\n" + extra_config
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

    def pause(self) -> None:
        """SIGSTOP: connections stay open and take what is written, nothing is read or acknowledged."""
        assert self.process is not None, "mosquitto is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``: the broker reads what waits and acknowledges it."""
        assert self.process is not None, "mosquitto is not running"
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused broker would not act on SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


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
