"""IPC operation handlers driven through a recording sink (no sockets), per core profile."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gglocal.configstore import ConfigStore
from gglocal.iotcore import IotDelivery, IotMessage
from gglocal.nucleus import CLASSIC, LITE, NucleusProfile
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


def setup(
    nucleus: NucleusProfile = CLASSIC,
) -> tuple[Operations, ConfigStore, FakeIot, list[tuple[str, str]]]:
    config = ConfigStore()
    config.register("me", {**ACCESS, "Interval": "5", "Obj": {"a": 1}})
    iot = FakeIot()
    states: list[tuple[str, str]] = []
    ops = Operations(config, PubSubBus(), iot, lambda c, s: states.append((c, s)), nucleus)
    return ops, config, iot, states


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


def test_stale_update_configuration_fails_on_classic_and_keeps_newer_keys_on_lite() -> None:
    ops, config, _, _ = setup(CLASSIC)
    _, ok = call(ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 1}, "timestamp": 4e9})
    _, stale = call(
        ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 2}, "timestamp": 1.0}
    )
    assert ok.bodies() == [("aws.greengrass#UpdateConfigurationResponse", {})]
    model, body = stale.bodies()[0]
    assert model == "aws.greengrass#FailedUpdateConditionCheckError"
    assert body["message"] == "Proposed timestamp is older than the config's latest modified timestamp"
    assert config.get("me", ["Obj"]) == {"a": 1, "z": 1}

    ops, config, _, _ = setup(LITE)
    call(ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 1}, "timestamp": 4e9})
    _, stale = call(
        ops, "UpdateConfiguration", {"keyPath": ["Obj"], "valueToMerge": {"z": 2, "y": 3}, "timestamp": 1.0}
    )
    assert stale.bodies() == [("aws.greengrass#UpdateConfigurationResponse", {})]
    assert config.get("me", ["Obj"]) == {"a": 1, "z": 1, "y": 3}  # z was written after the timestamp


@pytest.mark.parametrize("nucleus", [CLASSIC, LITE], ids=lambda n: n.name)
@pytest.mark.parametrize(
    "request_body",
    [
        {"valueToMerge": {"accessControl": {"x": {}}}},
        {"keyPath": ["accessControl", "aws.greengrass.ipc.mqttproxy"], "valueToMerge": {"p": {}}},
        {"valueToMerge": {"Interval": "6", "AccessControl": {}}},
    ],
)
def test_a_component_cannot_change_its_own_access_control(
    nucleus: NucleusProfile, request_body: dict[str, Any]
) -> None:
    ops, config, _, _ = setup(nucleus)
    _, sink = call(ops, "UpdateConfiguration", {**request_body, "timestamp": 4e9})
    model, body = sink.bodies()[0]
    assert model == "aws.greengrass#InvalidArgumentsError"
    assert body["_message"] == nucleus.access_control_refusal
    assert config.get("me", ["Interval"]) == "5"
    assert config.get("me", ["accessControl"]) == ACCESS["accessControl"]


def test_update_configuration_needs_a_timestamp_and_an_object() -> None:
    ops, config, _, _ = setup()
    _, no_time = call(ops, "UpdateConfiguration", {"valueToMerge": {"Interval": "6"}})
    _, no_value = call(ops, "UpdateConfiguration", {"timestamp": 4e9})
    assert no_time.bodies()[0][1]["message"] == "Timestamp is required"
    assert no_value.bodies()[0][1]["message"] == "ValueToMerge is required"
    assert config.get("me", ["Interval"]) == "5"


def test_lite_errors_carry_no_message_field() -> None:
    for nucleus, has_text in ((LITE, False), (CLASSIC, True)):
        ops, _, _, _ = setup(nucleus)
        _, denied = call(ops, "PublishToIoTCore", {"topicName": "other", "qos": "0"})
        _, missing = call(ops, "GetConfiguration", {"keyPath": ["Nope"]})
        for sink in (denied, missing):
            body = sink.bodies()[0][1]
            assert ("message" in body) is has_text, nucleus.name
            assert body["_errorCode"] in ("UnauthorizedError", "ResourceNotFoundError")


def test_validation_operations_exist_only_on_classic() -> None:
    lite, _, _, _ = setup(LITE)
    classic, _, _, _ = setup(CLASSIC)
    for operation in ("SubscribeToValidateConfigurationUpdates", "SendConfigurationValidityReport"):
        assert call(lite, operation, {})[1].bodies()[0][0] == "aws.greengrass#ServiceError"
    assert call(lite, "DeferComponentUpdate", {})[1].bodies()[0][0] == "aws.greengrass#ServiceError"
    _, subscribed = call(classic, "SubscribeToValidateConfigurationUpdates", {})
    assert subscribed.bodies() == [("aws.greengrass#SubscribeToValidateConfigurationUpdatesResponse", {})]
    _, unasked = call(
        classic,
        "SendConfigurationValidityReport",
        {"configurationValidityReport": {"status": "ACCEPTED", "deploymentId": "d-1"}},
    )
    assert unasked.bodies()[0][1]["message"] == "Validation request either timed out or was never made"
    _, no_id = call(
        classic, "SendConfigurationValidityReport", {"configurationValidityReport": {"status": "ACCEPTED"}}
    )
    assert "deployment ID provided was null" in no_id.bodies()[0][1]["message"]


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


def test_subscribing_to_a_missing_key_is_not_found() -> None:
    ops, _, _, _ = setup()
    _, sink = call(ops, "SubscribeToConfigurationUpdate", {"keyPath": ["Nope"]})
    assert sink.bodies()[0] == (
        "aws.greengrass#ResourceNotFoundError",
        {
            "_service": "aws.greengrass#GreengrassCoreIPC",
            "_message": "Key not found",
            "_errorCode": "ResourceNotFoundError",
            "message": "Key not found",
        },
    )


def test_update_state_reports_to_the_sink() -> None:
    ops, _, _, states = setup()
    call(ops, "UpdateState", {"state": "RUNNING"})
    _, bad = call(ops, "UpdateState", {"state": "FINISHED"})
    assert states == [("me", "RUNNING")]
    assert bad.bodies()[0][0] == "aws.greengrass#InvalidArgumentsError"
