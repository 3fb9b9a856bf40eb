"""IPC operation handlers driven through a recording sink (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

from gglocal.configstore import ConfigStore
from gglocal.iotcore import IotDelivery, IotMessage
from gglocal.operations import Operations
from gglocal.pubsub import PubSubBus
from gglocal.rpc import MessageType, RpcMessage, Stream


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[RpcMessage] = []
        self.forgotten: list[int] = []

    def send(self, message: RpcMessage, *, drop_if_full: bool = False) -> bool:
        self.sent.append(message)
        return True

    def forget_stream(self, stream_id: int) -> None:
        self.forgotten.append(stream_id)

    def bodies(self) -> list[tuple[str, dict[str, Any]]]:
        return [(str(m.get("service-model-type")), json.loads(m.payload)) for m in self.sent]


class FakeIot:
    def __init__(self) -> None:
        self.published: list[IotMessage] = []
        self.subscriptions: list[tuple[str, IotDelivery]] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def publish(self, message: IotMessage) -> None:
        self.published.append(message)

    def subscribe(self, topic_filter: str, qos: int, deliver: IotDelivery) -> Any:
        entry = (topic_filter, deliver)
        self.subscriptions.append(entry)
        return lambda: self.subscriptions.remove(entry)


ACCESS = {
    "accessControl": {
        "aws.greengrass.ipc.mqttproxy": {"p": {"operations": ["*"], "resources": ["allowed/#"]}},
    }
}


def setup() -> tuple[Operations, ConfigStore, FakeIot, list[tuple[str, str]]]:
    config = ConfigStore()
    config.register("me", {**ACCESS, "Interval": "5", "Obj": {"a": 1}})
    iot = FakeIot()
    states: list[tuple[str, str]] = []
    return Operations(config, PubSubBus(), iot, lambda c, s: states.append((c, s))), config, iot, states


def call(
    ops: Operations, operation: str, body: dict[str, Any], stream_id: int = 1
) -> tuple[Stream, RecordingSink]:
    sink = RecordingSink()
    stream = Stream(sink, stream_id, f"aws.greengrass#{operation}", "me")
    request = RpcMessage(MessageType.APPLICATION_MESSAGE, 0, stream_id, (), json.dumps(body).encode())
    ops.open_stream(stream, request)
    return stream, sink


def test_publish_to_iot_core_queues_the_decoded_payload() -> None:
    ops, _, iot, _ = setup()
    payload = base64.b64encode(b"hi").decode()
    stream, sink = call(ops, "PublishToIoTCore", {"topicName": "allowed/x", "qos": "1", "payload": payload})
    assert sink.bodies() == [("aws.greengrass#PublishToIoTCoreResponse", {})]
    assert sink.sent[0].terminates and stream.closed
    assert iot.published == [IotMessage("allowed/x", b"hi", 1, False)]


def test_denied_and_invalid_requests_get_modeled_errors() -> None:
    ops, _, iot, _ = setup()
    _, denied = call(ops, "PublishToIoTCore", {"topicName": "other", "qos": "0"})
    _, bad_qos = call(ops, "PublishToIoTCore", {"topicName": "allowed/x", "qos": "2"})
    _, wildcard = call(ops, "PublishToIoTCore", {"topicName": "allowed/#", "qos": "0"})
    assert denied.bodies()[0][0] == "aws.greengrass#UnauthorizedError"
    assert bad_qos.bodies()[0][0] == "aws.greengrass#InvalidArgumentsError"
    assert wildcard.bodies()[0][0] == "aws.greengrass#InvalidArgumentsError"
    assert all(s.sent[0].message_type == MessageType.APPLICATION_ERROR for s in (denied, bad_qos, wildcard))
    assert iot.published == []


def test_unsupported_operation_is_a_service_error() -> None:
    ops, _, _, _ = setup()
    _, sink = call(ops, "ListComponents", {})
    model, body = sink.bodies()[0]
    assert model == "aws.greengrass#ServiceError"
    assert body["message"] == "Operation aws.greengrass#ListComponents is not supported by Greengrass"


def test_get_configuration_leaf_object_and_missing() -> None:
    ops, _, _, _ = setup()
    _, leaf = call(ops, "GetConfiguration", {"keyPath": ["Interval"]})
    _, obj = call(ops, "GetConfiguration", {"keyPath": ["Obj"]})
    _, missing = call(ops, "GetConfiguration", {"componentName": "nobody"})
    assert leaf.bodies()[0][1] == {"componentName": "me", "value": {"Interval": "5"}}
    assert obj.bodies()[0][1] == {"componentName": "me", "value": {"a": 1}}
    assert missing.bodies()[0][0] == "aws.greengrass#ResourceNotFoundError"


def test_configuration_events_follow_the_response_and_stop_after_close() -> None:
    ops, config, _, _ = setup()
    stream, sink = call(ops, "SubscribeToConfigurationUpdate", {"keyPath": ["Obj"]})
    config.merge("me", {"Obj": {"b": 2}})
    assert sink.bodies() == [
        ("aws.greengrass#SubscribeToConfigurationUpdateResponse", {}),
        (
            "aws.greengrass#ConfigurationUpdateEvents",
            {"configurationUpdateEvent": {"componentName": "me", "keyPath": ["Obj", "b"]}},
        ),
    ]
    assert not sink.sent[0].terminates
    stream.close()
    config.merge("me", {"Obj": {"c": 3}})
    assert len(sink.sent) == 2


def test_stale_update_configuration_is_a_conflict() -> None:
    ops, _, _, _ = setup()
    _, ok = call(ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 1}, "timestamp": 4e9})
    _, stale = call(
        ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 2}, "timestamp": 1.0}
    )
    assert ok.bodies() == [("aws.greengrass#UpdateConfigurationResponse", {})]
    assert stale.bodies()[0][0] == "aws.greengrass#ConflictError"


def test_subscribe_to_iot_core_is_dropped_when_the_stream_closes() -> None:
    ops, _, iot, _ = setup()
    stream, sink = call(ops, "SubscribeToIoTCore", {"topicName": "allowed/+", "qos": "1"})
    ((_, deliver),) = iot.subscriptions
    deliver(IotMessage("allowed/1", b"x", 1))
    assert sink.bodies()[1] == (
        "aws.greengrass#IoTCoreMessage",
        {"message": {"topicName": "allowed/1", "payload": base64.b64encode(b"x").decode()}},
    )
    stream.close()
    assert iot.subscriptions == []


def test_update_state_reports_to_the_sink() -> None:
    ops, _, _, states = setup()
    call(ops, "UpdateState", {"state": "RUNNING"})
    _, bad = call(ops, "UpdateState", {"state": "FINISHED"})
    assert states == [("me", "RUNNING")]
    assert bad.bodies()[0][0] == "aws.greengrass#InvalidArgumentsError"
