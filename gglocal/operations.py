"""The Greengrass IPC operations the stand-in supports, and the dispatcher that routes streams to them.

Supported: PublishToIoTCore, SubscribeToIoTCore, PublishToTopic, SubscribeToTopic, GetConfiguration,
UpdateConfiguration, SubscribeToConfigurationUpdate, UpdateState, and on the Java nucleus profile
SubscribeToValidateConfigurationUpdates and SendConfigurationValidityReport (``gglocal.config_operations``).
Any other operation, and any the profile's core does not serve, is answered with ServiceError "Operation
aws.greengrass#X is not supported by Greengrass". Errors carry ``message`` only where the core sends it
(not nucleus lite). Shapes are the JSON of ``awsiot.greengrasscoreipc.model`` (camelCase, bytes as base64,
QoS as "0"/"1").
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gglocal.auth import MQTTPROXY, PUBSUB, Authorizer
from gglocal.config_operations import ConfigurationOperations, invalid
from gglocal.configstore import ConfigStore
from gglocal.errors import IpcOperationError
from gglocal.iotcore import IotCore, IotMessage
from gglocal.nucleus import CLASSIC, NucleusProfile
from gglocal.pubsub import RECEIVE_ALL, RECEIVE_FROM_OTHERS, LocalMessage, PubSubBus
from gglocal.rpc import MODEL_PREFIX, RpcMessage, Stream
from gglocal.validation import ValidationHub
from ggrules.topics import validate_filter, validate_topic

logger = logging.getLogger(__name__)

StateSink = Callable[[str, str], None]
Handler = Callable[[Stream, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class OperationSpec:
    name: str
    handler: Handler
    streaming: bool


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise invalid(f"{key} is required and must be a non-empty string")
    return value


def _qos(request: dict[str, Any]) -> int:
    value = request.get("qos", "0")
    if str(value) not in ("0", "1"):
        raise invalid(f"qos must be '0' (AT_MOST_ONCE) or '1' (AT_LEAST_ONCE), got {value!r}")
    return int(value)


class Operations:
    """Handlers for the supported operations; open_stream() is the dispatch entry point."""

    def __init__(
        self,
        config: ConfigStore,
        bus: PubSubBus,
        iot: IotCore,
        on_state: StateSink,
        nucleus: NucleusProfile = CLASSIC,
        thing_name: str | None = None,
    ) -> None:
        self._config = config
        self._bus = bus
        self._iot = iot
        self._on_state = on_state
        self.nucleus = nucleus
        self.validation = ValidationHub()
        self._auth = Authorizer(self._configuration_of, thing_name)
        configuration = ConfigurationOperations(config, nucleus, self.validation)
        specs = (
            OperationSpec("PublishToIoTCore", self.publish_to_iot_core, False),
            OperationSpec("SubscribeToIoTCore", self.subscribe_to_iot_core, True),
            OperationSpec("PublishToTopic", self.publish_to_topic, False),
            OperationSpec("SubscribeToTopic", self.subscribe_to_topic, True),
            OperationSpec("GetConfiguration", configuration.get_configuration, False),
            OperationSpec("UpdateConfiguration", configuration.update_configuration, False),
            OperationSpec(
                "SubscribeToConfigurationUpdate", configuration.subscribe_to_configuration_update, True
            ),
            OperationSpec(
                "SubscribeToValidateConfigurationUpdates",
                configuration.subscribe_to_validate_configuration_updates,
                True,
            ),
            OperationSpec(
                "SendConfigurationValidityReport", configuration.send_configuration_validity_report, False
            ),
            OperationSpec("UpdateState", self.update_state, False),
        )
        self.specs = {s.name: s for s in specs if s.name not in nucleus.unsupported_operations}

    def _configuration_of(self, component: str) -> dict[str, Any] | None:
        try:
            value = self._config.get(component)
        except KeyError:
            return None
        return value if isinstance(value, dict) else None

    # -- dispatch --------------------------------------------------------------------------------
    def open_stream(self, stream: Stream, request: RpcMessage) -> None:
        """Run the operation named by the stream and answer: response, modeled error, or ServiceError."""
        name = stream.operation.removeprefix(MODEL_PREFIX)
        spec = self.specs.get(name) if stream.operation.startswith(MODEL_PREFIX) else None
        text = self.nucleus.error_text
        if spec is None:
            message = f"Operation {stream.operation} is not supported by Greengrass"
            stream.fail("ServiceError", message, text=text)
            return
        try:
            body = json.loads(request.payload or b"{}")
            if not isinstance(body, dict):
                raise invalid("request body must be a JSON object")
            response = spec.handler(stream, body)
        except ValueError as exc:
            stream.fail("InvalidArgumentsError", f"malformed request: {exc}", text=text)
            return
        except IpcOperationError as exc:
            stream.fail(exc.error_name, exc.message, text=text)
            return
        except Exception as exc:
            logger.exception("%s from %s failed", name, stream.component)
            stream.fail("ServiceError", f"{name} failed in the local core: {exc}", text=text)
            return
        stream.respond(f"{MODEL_PREFIX}{name}Response", response, terminate=not spec.streaming)

    # -- IoT Core --------------------------------------------------------------------------------
    def publish_to_iot_core(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic = _text(request, "topicName")
        if problem := validate_topic(topic):
            raise invalid(problem)
        qos = _qos(request)
        self._auth.check(stream.component, MQTTPROXY, "aws.greengrass#PublishToIoTCore", topic)
        try:
            payload = base64.b64decode(request.get("payload") or "", validate=True)
        except binascii.Error as exc:
            raise invalid(f"payload is not valid base64: {exc}") from exc
        self._iot.publish(IotMessage(topic, payload, qos, bool(request.get("retain", False))))
        return {}

    def subscribe_to_iot_core(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic_filter = _text(request, "topicName")
        if problem := validate_filter(topic_filter):
            raise invalid(problem)
        qos = _qos(request)
        self._auth.check(stream.component, MQTTPROXY, "aws.greengrass#SubscribeToIoTCore", topic_filter)

        def deliver(message: IotMessage) -> None:
            body = {"topicName": message.topic, "payload": base64.b64encode(message.payload).decode()}
            stream.send_event("aws.greengrass#IoTCoreMessage", {"message": body})

        stream.add_close_callback(self._iot.subscribe(topic_filter, qos, deliver))
        return {}

    # -- local pub/sub ---------------------------------------------------------------------------
    def publish_to_topic(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic = _text(request, "topic")
        if problem := validate_topic(topic):
            raise invalid(problem)
        publish = request.get("publishMessage")
        if not isinstance(publish, dict) or ("jsonMessage" in publish) == ("binaryMessage" in publish):
            raise invalid("publishMessage must hold exactly one of jsonMessage or binaryMessage")
        self._auth.check(stream.component, PUBSUB, "aws.greengrass#PublishToTopic", topic)
        if "jsonMessage" in publish:
            message = LocalMessage(
                topic, stream.component, json_message=(publish["jsonMessage"] or {}).get("message")
            )
        else:
            binary = (publish["binaryMessage"] or {}).get("message") or ""
            message = LocalMessage(topic, stream.component, binary_message=str(binary))
        self._bus.publish(message)
        return {}

    def subscribe_to_topic(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        topic_filter = _text(request, "topic")
        if problem := validate_filter(topic_filter):
            raise invalid(problem)
        mode = request.get("receiveMode") or RECEIVE_ALL
        if mode not in (RECEIVE_ALL, RECEIVE_FROM_OTHERS):
            raise invalid(f"receiveMode must be {RECEIVE_ALL} or {RECEIVE_FROM_OTHERS}")
        self._auth.check(stream.component, PUBSUB, "aws.greengrass#SubscribeToTopic", topic_filter)

        def deliver(message: LocalMessage) -> None:
            context = {"topic": message.topic}
            if message.binary_message is not None:
                body = {"binaryMessage": {"message": message.binary_message, "context": context}}
            else:
                body = {"jsonMessage": {"message": message.json_message, "context": context}}
            stream.send_event("aws.greengrass#SubscriptionResponseMessage", body)

        stream.add_close_callback(self._bus.subscribe(topic_filter, stream.component, deliver, mode))
        return {"topicName": topic_filter}

    # -- lifecycle -------------------------------------------------------------------------------
    def update_state(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        state = request.get("state")
        if state not in ("RUNNING", "ERRORED"):
            raise invalid("state must be RUNNING or ERRORED")
        self._on_state(stream.component, str(state))
        return {}
