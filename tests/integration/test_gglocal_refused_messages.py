"""Messages IoT Core (or the broker) refuses for good never block the outbox head: refused at publish over
IPC, dropped and counted when already in the outbox, dropped after the broker ends the connection for one
three times; the messages behind them are delivered. Real mosquitto, real awsiotsdk client."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from awsiot.greengrasscoreipc import model

from gglocal.iotcore import IotMessage
from gglocal.mqtt_bridge import MqttBridge
from gglocal.outbox import Outbox
from gglocal.server import IpcServer
from tests.gglocal_builds import publish_access
from tests.mqtt_broker import Mosquitto

if TYPE_CHECKING:
    from tests.mqtt_broker import MqttSubscriber

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
ACCESS = publish_access("*")


def unique(payloads: list[bytes]) -> list[bytes]:
    seen: list[bytes] = []
    for payload in payloads:
        if payload not in seen:
            seen.append(payload)
    return seen


@pytest.fixture
def make_bridge(tmp_path: Path) -> Iterator[Callable[[Mosquitto, Outbox], MqttBridge]]:
    made: list[MqttBridge] = []

    def make(broker: Mosquitto, outbox: Outbox) -> MqttBridge:
        bridge = MqttBridge(broker.host, broker.port, outbox, client_id=f"gglocal-refusals-{len(made)}")
        bridge.start()
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.stop()
        bridge.outbox.close()


REFUSED_TOPICS = {
    "NUL": "results/a\x00b",
    "control character": "results/a\x01b",
    "C1 control character": "results/a\x85b",
    "non-character": "results/a\ufffeb",
    "wildcard": "results/+/x",
    "300-byte topic": "results/" + "x" * 292,
    "8 slashes": "a/b/c/d/e/f/g/h/i",
}


def test_messages_iot_core_would_refuse_are_refused_at_publish_and_the_rest_flow(
    mosquitto: Mosquitto,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    make_bridge: Callable[[Mosquitto, Outbox], MqttBridge],
    ipc_socket_path: Path,
    ipc_client: Callable[[IpcServer, str], Any],
) -> None:
    subscriber = mqtt_subscriber(["results/#"])
    bridge = make_bridge(mosquitto, Outbox(":memory:"))
    assert bridge.wait_connected(TIMEOUT)
    server = IpcServer(ipc_socket_path, iot=bridge)
    server.start()
    try:
        client = ipc_client(server, server.register_component("com.example.Pub", ACCESS))
        for what, topic in REFUSED_TOPICS.items():
            with pytest.raises(model.InvalidArgumentsError):
                client.publish_to_iot_core_async(topic_name=topic, qos="1", payload=b"x").result(TIMEOUT)
            client.publish_to_iot_core_async(
                topic_name="results/good", qos="1", payload=what.encode()
            ).result(TIMEOUT)
        with pytest.raises(model.InvalidArgumentsError) as refused:
            client.publish_to_iot_core_async(
                topic_name="results/big", qos="1", payload=bytes(200 * 1024)
            ).result(TIMEOUT)
        assert "AWS IoT Core takes at most 131072" in refused.value.message
        got = subscriber.wait_for(len(REFUSED_TOPICS), TIMEOUT)
        assert unique([m.payload for m in got]) == [what.encode() for what in REFUSED_TOPICS]
        assert len(bridge.outbox) == 0 or bridge.outbox.wait_until_empty(TIMEOUT)
    finally:
        server.stop()


def test_refused_messages_already_in_the_outbox_are_dropped_and_never_block_the_ones_behind(
    tmp_path: Path,
    mosquitto: Mosquitto,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    make_bridge: Callable[[Mosquitto, Outbox], MqttBridge],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # before: a NUL topic at the head: 0 of the 100 behind it delivered in 20 s (and 53 s of nothing in the
    # field); a wildcard topic at the head ended the sender thread
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    bad = ["results/a\x00b", "results/+/x", "results/a\x01b", "results/" + "x" * 300]
    with sqlite3.connect(path) as db:  # what an older stand-in accepted into its outbox
        rows = [(topic, b"bad", 1, 0) for topic in bad]
        rows += [("results/good", json.dumps({"n": n}).encode(), 1, 0) for n in range(100)]
        db.executemany("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)", rows)
    subscriber = mqtt_subscriber(["results/#"])
    started = time.monotonic()
    bridge = make_bridge(mosquitto, Outbox(path))
    got = subscriber.wait_for(100, TIMEOUT)
    elapsed = time.monotonic() - started
    assert unique([m.payload for m in got]) == [json.dumps({"n": n}).encode() for n in range(100)]
    assert elapsed < 5.0, elapsed
    assert bridge.outbox.wait_until_empty(TIMEOUT)
    assert bridge.status()["outbox"]["undeliverable"] == 4
    assert caplog.text.count("dropped message") == 4 and "must not contain NUL" in caplog.text


def test_a_message_the_broker_ends_the_connection_for_is_dropped_and_the_rest_flow(
    tmp_path: Path,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
    make_bridge: Callable[[Mosquitto, Outbox], MqttBridge],
) -> None:
    # a refusal no rule of ours foresees: this broker disconnects clients that send packets over 10 kB
    strict = Mosquitto(tmp_path / "strict", extra_config="max_packet_size 10000\n")
    strict.start()
    try:
        from tests.mqtt_broker import MqttSubscriber

        subscriber = MqttSubscriber(strict, ["results/#"])
        bridge = make_bridge(strict, Outbox(":memory:"))
        assert bridge.wait_connected(TIMEOUT)
        bridge.publish(IotMessage("results/big", bytes(20_000), 1))
        for n in range(20):
            bridge.publish(IotMessage("results/small", str(n).encode(), 1))
        got = subscriber.wait_until(lambda got: len(unique([m.payload for m in got])) >= 20, 30.0)
        assert unique([m.payload for m in got]) == [str(n).encode() for n in range(20)]
        status = bridge.status()
        assert status["refused_by_broker"] == 1 and status["outbox"]["undeliverable"] == 1
        assert bridge.outbox.wait_until_empty(TIMEOUT)
        subscriber.close()
    finally:
        strict.stop()
