"""The IoT Core bridge and its outbox against a real mosquitto that goes away and comes back."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gglocal import Core
from gglocal.iotcore import IotMessage
from gglocal.mqtt_bridge import MqttBridge, parse_host_port
from gglocal.outbox import Outbox
from gglocal.server import IpcServer
from tests.gglocal_helpers import wait_until

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto, MqttSubscriber

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
ACCESS = {
    "accessControl": {
        "aws.greengrass.ipc.mqttproxy": {
            "p": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["ordered/#"]}
        }
    }
}


@pytest.fixture
def bridge(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[MqttBridge]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    bridge = MqttBridge(mosquitto.host, mosquitto.port, outbox, client_id="gglocal-bridge-under-test")
    bridge.start()
    assert bridge.wait_connected(TIMEOUT)
    yield bridge
    bridge.stop()
    outbox.close()


def unique_in_order(payloads: list[bytes]) -> list[bytes]:
    seen: list[bytes] = []
    for payload in payloads:
        if payload not in seen:  # QoS 1 is at least once: a message in flight at the outage may come twice
            seen.append(payload)
    return seen


def test_messages_published_while_the_broker_is_down_arrive_in_order_after_it_returns(
    bridge: MqttBridge,
    mosquitto: Mosquitto,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    ipc_socket_path: Path,
    ipc_client: Callable[[IpcServer, str], Any],
) -> None:
    subscriber = mqtt_subscriber(["ordered/#"])
    server = IpcServer(ipc_socket_path, iot=bridge)
    server.start()
    try:
        client = ipc_client(server, server.register_component("com.example.Pub", ACCESS))
        sent: list[bytes] = []

        def publish(count: int) -> None:
            for _ in range(count):
                payload = json.dumps({"n": len(sent)}).encode()
                client.publish_to_iot_core_async(topic_name="ordered/x", qos="1", payload=payload).result(
                    TIMEOUT
                )
                sent.append(payload)

        publish(5)
        assert len(subscriber.wait_for(5, TIMEOUT)) >= 5

        mosquitto.stop()
        publish(30)  # IPC still succeeds: the messages are accepted into the outbox
        assert len(bridge.outbox) >= 29
        mosquitto.start()

        received = subscriber.wait_until(
            lambda got: len(unique_in_order([m.payload for m in got])) >= 35, 30.0
        )
        assert unique_in_order([m.payload for m in received]) == sent
        assert bridge.outbox.wait_until_empty(TIMEOUT)
    finally:
        server.stop()


def test_outbox_is_delivered_when_the_broker_appears_later(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Callable[[list[str]], MqttSubscriber]
) -> None:
    subscriber = mqtt_subscriber(["ordered/#"])
    mosquitto.stop()
    outbox = Outbox(tmp_path / "late.sqlite")
    late = MqttBridge(mosquitto.host, mosquitto.port, outbox, client_id="gglocal-late-bridge")
    late.start()
    try:
        for index in range(3):
            late.publish(IotMessage("ordered/late", str(index).encode(), 1))
        assert not late.wait_connected(0.5)
        mosquitto.start()
        received = subscriber.wait_until(
            lambda got: len(unique_in_order([m.payload for m in got])) >= 3, 30.0
        )
        assert unique_in_order([m.payload for m in received]) == [b"0", b"1", b"2"]
    finally:
        late.stop()
        outbox.close()


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_host_port("broker") == ("broker", 1883)
    assert parse_host_port("[::1]:1885") == ("::1", 1885)
    with pytest.raises(ValueError):
        parse_host_port("host:abc")


def test_the_core_warns_while_the_broker_is_away_and_status_shows_the_outbox(
    tmp_path: Path,
    mosquitto: Mosquitto,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    ipc_client: Callable[[IpcServer, str], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    subscriber = mqtt_subscriber(["ordered/#"])
    core = Core(tmp_path / "gg", mqtt=mosquitto.address, broker_warn_after_s=0.3, broker_warn_every_s=0.6)
    with caplog.at_level(logging.INFO, logger="gglocal.broker_watch"), core:
        assert core.ipc is not None and isinstance(core.iot, MqttBridge)
        assert core.iot.wait_connected(TIMEOUT)
        client = ipc_client(core.ipc, core.ipc.register_component("com.example.Pub", ACCESS))
        mosquitto.stop()
        assert wait_until(lambda: not core.iot_status()["connected"], TIMEOUT)
        for index in range(3):
            client.publish_to_iot_core_async(topic_name="ordered/x", qos="1", payload=str(index)).result(
                TIMEOUT
            )
        status = core.status()["iot"]
        assert (status["broker"], status["connected"], status["outbox"]) == (mosquitto.address, False, 3)
        assert wait_until(lambda: caplog.text.count("cannot be reached") >= 2, TIMEOUT)  # early, then again
        assert "3 message(s) wait in the outbox" in caplog.text
        mosquitto.start()
        assert len(subscriber.wait_for(3, TIMEOUT)) >= 3
        assert wait_until(lambda: "reachable again" in caplog.text, TIMEOUT)
        assert wait_until(lambda: core.iot_status()["outbox"] == 0, TIMEOUT)
