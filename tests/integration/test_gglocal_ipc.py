"""The IPC server against the real awsiotsdk GreengrassCoreIPCClientV2, with a real mosquitto for IoT Core."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from awsiot.greengrasscoreipc import model

from gglocal.mqtt_bridge import MqttBridge
from gglocal.outbox import Outbox
from gglocal.server import IpcServer

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto, MqttSubscriber

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 10.0
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
CONFIG: dict[str, Any] = {
    "Interval": "5",
    "Camera": {"Width": 640, "Height": 480},
    "accessControl": {
        MQTTPROXY: {
            "pub": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["gg/results/#"]},
            "sub": {"operations": ["aws.greengrass#SubscribeToIoTCore"], "resources": ["gg/commands/+"]},
        },
        PUBSUB: {"local": {"operations": ["*"], "resources": ["local/*"]}},
    },
}

ClientFactory = Callable[[IpcServer, str], Any]


@pytest.fixture
def bridged_server(ipc_socket_path: Path, mosquitto: Mosquitto) -> Iterator[IpcServer]:
    bridge = MqttBridge(mosquitto.host, mosquitto.port, Outbox(":memory:"), client_id="gglocal-test-bridge")
    bridge.start()
    assert bridge.wait_connected(TIMEOUT)
    server = IpcServer(ipc_socket_path, iot=bridge)
    server.start()
    yield server
    server.stop()
    bridge.stop()
    bridge.outbox.close()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_publish_to_iot_core_arrives_at_the_broker(
    bridged_server: IpcServer,
    ipc_client: ClientFactory,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
) -> None:
    subscriber = mqtt_subscriber(["gg/results/#"])
    client = ipc_client(bridged_server, bridged_server.register_component("com.example.Pub", CONFIG))
    for qos in ("0", "1"):
        client.publish_to_iot_core_async(
            topic_name=f"gg/results/q{qos}", qos=qos, payload=b'{"ok": 1}'
        ).result(TIMEOUT)
    received = subscriber.wait_for(2, TIMEOUT)
    assert sorted((m.topic, m.payload) for m in received) == [
        ("gg/results/q0", b'{"ok": 1}'),
        ("gg/results/q1", b'{"ok": 1}'),
    ]


def test_subscribe_to_iot_core_receives_broker_messages(
    bridged_server: IpcServer,
    ipc_client: ClientFactory,
    mqtt_subscriber: Callable[[list[str]], MqttSubscriber],
) -> None:
    client = ipc_client(bridged_server, bridged_server.register_component("com.example.Sub", CONFIG))
    events: list[model.IoTCoreMessage] = []
    future, operation = client.subscribe_to_iot_core_async(
        topic_name="gg/commands/+", qos="1", on_stream_event=events.append
    )
    future.result(TIMEOUT)
    publisher = mqtt_subscriber([])
    assert wait_until(lambda: _publish_and_check(publisher, events), TIMEOUT)
    assert events[0].message.topic_name == "gg/commands/cam1"
    assert events[0].message.payload == b"start"
    operation.close().result(TIMEOUT)


def _publish_and_check(publisher: MqttSubscriber, events: list[Any]) -> bool:
    if not events:
        publisher.publish("gg/commands/cam1", b"start")
        time.sleep(0.2)
    return bool(events)


def test_topic_outside_access_control_is_unauthorized(
    ipc_server: IpcServer, ipc_client: ClientFactory
) -> None:
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.Pub", CONFIG))
    with pytest.raises(model.UnauthorizedError) as info:
        client.publish_to_iot_core_async(topic_name="not/allowed", qos="1", payload=b"x").result(TIMEOUT)
    assert "not/allowed" in info.value.message
    with pytest.raises(model.UnauthorizedError):
        client.subscribe_to_iot_core_async(topic_name="gg/commands/#", qos="0")[0].result(TIMEOUT)
    no_policy = ipc_client(ipc_server, ipc_server.register_component("com.example.NoPolicy", {}))
    with pytest.raises(model.UnauthorizedError):
        no_policy.publish_to_iot_core_async(topic_name="gg/results/x", qos="0", payload=b"x").result(TIMEOUT)


def test_wrong_svcuid_is_refused(ipc_server: IpcServer, ipc_client: ClientFactory) -> None:
    from awsiot.eventstreamrpc import AccessDeniedError

    ipc_server.register_component("com.example.Real", CONFIG)
    with pytest.raises(AccessDeniedError):
        ipc_client(ipc_server, "ABCDEFGHIJKLMNOP")


def test_unsupported_operation_is_a_service_error(ipc_server: IpcServer, ipc_client: ClientFactory) -> None:
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.C", CONFIG))
    with pytest.raises(model.ServiceError) as info:
        client.list_components_async().result(TIMEOUT)
    assert info.value.message == "Operation aws.greengrass#ListComponents is not supported by Greengrass"
    # the connection stays usable after an error
    assert client.get_configuration_async(key_path=["Interval"]).result(TIMEOUT).value == {"Interval": "5"}


def test_get_configuration_returns_leaf_object_and_other_components(
    ipc_server: IpcServer, ipc_client: ClientFactory
) -> None:
    ipc_server.register_component("com.example.Other", {"Shared": "yes"})
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.C", CONFIG))
    leaf = client.get_configuration_async(key_path=["Camera", "Width"]).result(TIMEOUT)
    assert (leaf.component_name, leaf.value) == ("com.example.C", {"Width": 640})
    assert client.get_configuration_async(key_path=["Camera"]).result(TIMEOUT).value == {
        "Width": 640,
        "Height": 480,
    }
    whole = client.get_configuration_async().result(TIMEOUT).value
    assert whole["Interval"] == "5" and "accessControl" in whole
    other = client.get_configuration_async(component_name="com.example.Other").result(TIMEOUT)
    assert other.value == {"Shared": "yes"}
    with pytest.raises(model.ResourceNotFoundError):
        client.get_configuration_async(key_path=["Missing"]).result(TIMEOUT)


def test_configuration_update_events_reach_subscribers(
    ipc_server: IpcServer, ipc_client: ClientFactory
) -> None:
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.C", CONFIG))
    events: list[model.ConfigurationUpdateEvents] = []
    got = threading.Event()

    def on_event(event: model.ConfigurationUpdateEvents) -> None:
        events.append(event)
        got.set()

    future, _ = client.subscribe_to_configuration_update_async(key_path=["Camera"], on_stream_event=on_event)
    future.result(TIMEOUT)
    ipc_server.config.merge("com.example.C", {"Camera": {"Width": 1280}})  # a change from outside
    assert got.wait(TIMEOUT)
    update = events[0].configuration_update_event
    assert (update.component_name, update.key_path) == ("com.example.C", ["Camera", "Width"])
    got.clear()
    client.update_configuration_async(
        key_path=["Camera"], value_to_merge={"Height": 720}, timestamp=datetime.datetime.now()
    ).result(TIMEOUT)
    assert got.wait(TIMEOUT)
    assert events[-1].configuration_update_event.key_path == ["Camera", "Height"]
    assert ipc_server.config.get("com.example.C", ["Camera"]) == {"Width": 1280, "Height": 720}


def test_local_pubsub_round_trip_and_receive_mode(ipc_server: IpcServer, ipc_client: ClientFactory) -> None:
    sender = ipc_client(ipc_server, ipc_server.register_component("com.example.Sender", CONFIG))
    receiver = ipc_client(ipc_server, ipc_server.register_component("com.example.Receiver", CONFIG))
    received: list[model.SubscriptionResponseMessage] = []
    own: list[model.SubscriptionResponseMessage] = []
    receiver.subscribe_to_topic_async(topic="local/frames", on_stream_event=received.append)[0].result(
        TIMEOUT
    )
    sender.subscribe_to_topic_async(
        topic="local/frames",
        receive_mode=model.ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS,
        on_stream_event=own.append,
    )[0].result(TIMEOUT)
    sender.publish_to_topic_async(
        topic="local/frames",
        publish_message=model.PublishMessage(json_message=model.JsonMessage(message={"n": 1})),
    ).result(TIMEOUT)
    sender.publish_to_topic_async(
        topic="local/frames",
        publish_message=model.PublishMessage(binary_message=model.BinaryMessage(message=b"\x01")),
    ).result(TIMEOUT)
    assert wait_until(lambda: len(received) == 2)
    assert received[0].json_message.message == {"n": 1}
    assert received[0].json_message.context.topic == "local/frames"
    assert received[1].binary_message.message == b"\x01"
    time.sleep(0.2)
    assert own == []
    with pytest.raises(model.UnauthorizedError):
        sender.publish_to_topic_async(
            topic="remote/x", publish_message=model.PublishMessage(json_message=model.JsonMessage(message={}))
        ).result(TIMEOUT)


def test_subscriptions_are_dropped_on_terminate_and_disconnect(
    ipc_server: IpcServer, ipc_client: ClientFactory
) -> None:
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.C", CONFIG))
    future, operation = client.subscribe_to_topic_async(topic="local/a", on_stream_event=lambda e: None)
    future.result(TIMEOUT)
    client.subscribe_to_topic_async(topic="local/b", on_stream_event=lambda e: None)[0].result(TIMEOUT)
    assert len(ipc_server.bus) == 2
    operation.close().result(TIMEOUT)
    assert wait_until(lambda: len(ipc_server.bus) == 1)
    client.close().result(TIMEOUT)
    assert wait_until(lambda: len(ipc_server.bus) == 0 and ipc_server.connection_count == 0)


def test_update_state_is_reported(ipc_server: IpcServer, ipc_client: ClientFactory) -> None:
    client = ipc_client(ipc_server, ipc_server.register_component("com.example.C", CONFIG))
    client.update_state_async(state=model.ReportedLifecycleState.RUNNING).result(TIMEOUT)
    assert ipc_server.reported_states == {"com.example.C": "RUNNING"}


def test_ping_is_answered_and_garbage_closes_the_connection(
    ipc_server: IpcServer, ipc_client: ClientFactory
) -> None:
    import socket

    from gglocal.codec import Header, MessageDecoder, encode_message
    from gglocal.rpc import MessageType, RpcMessage

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(TIMEOUT)
        raw.connect(str(ipc_server.socket_path))
        ping = RpcMessage(MessageType.PING, 0, 0, (Header.string("echo", "me"), Header.int32(":x", 1)), b"hi")
        raw.sendall(encode_message(ping.to_event_message()))
        (frame,) = MessageDecoder().feed(raw.recv(4096))
        reply = RpcMessage.from_event_message(frame)
        assert reply.message_type == MessageType.PING_RESPONSE
        assert (reply.get("echo"), reply.get(":x"), reply.payload) == ("me", None, b"hi")
        raw.sendall(b"\x00\x00\x00\x10garbage-garbage-")
        data = raw.recv(4096)
        frames = MessageDecoder().feed(data) if data else []
        assert (
            not frames or RpcMessage.from_event_message(frames[0]).message_type == MessageType.PROTOCOL_ERROR
        )
        assert raw.recv(4096) == b""
