"""The configuration IPC operations: Get/UpdateConfiguration, SubscribeToConfigurationUpdate, and (Java
nucleus only) SubscribeToValidateConfigurationUpdates and SendConfigurationValidityReport.

GetConfiguration and SubscribeToConfigurationUpdate need no policy, for another component's configuration
too (both cores). UpdateConfiguration changes only the caller's configuration, needs a ``timestamp`` and an
object ``valueToMerge``, and never ``accessControl``: a key path starting with it, or a root merge holding it,
is InvalidArgumentsError (ConfigStoreIPCEventStreamAgent, lite's update_configuration.c; both compare the
key as written, the stand-in any case). An update older than what is stored fails on the Java nucleus
(FailedUpdateConditionCheckError) and leaves the newer keys alone on lite, which writes the rest one key
at a time (``NucleusProfile.merges_key_by_key``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gglocal.configstore import ConfigStore
from gglocal.errors import IpcOperationError
from gglocal.nucleus import NucleusProfile
from gglocal.rpc import Stream
from gglocal.validation import ACCEPTED, REJECTED, ValidationHub

logger = logging.getLogger(__name__)

ACCESS_CONTROL = "accessControl"
KEY_NOT_FOUND = "Key not found"


def invalid(message: str) -> IpcOperationError:
    return IpcOperationError("InvalidArgumentsError", message)


def key_path(request: dict[str, Any]) -> tuple[str, ...]:
    value = request.get("keyPath") or []
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise invalid("keyPath must be a list of strings")
    return tuple(value)


class ConfigurationOperations:
    """Handlers of the configuration operations for one core profile."""

    def __init__(self, config: ConfigStore, nucleus: NucleusProfile, validation: ValidationHub) -> None:
        self._config = config
        self._nucleus = nucleus
        self._validation = validation

    def get_configuration(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        component = request.get("componentName") or stream.component
        path = key_path(request)
        try:
            value = self._config.get(component, path)
        except KeyError as exc:
            logger.debug("GetConfiguration by %s: %s has no %s", stream.component, component, "/".join(path))
            raise IpcOperationError("ResourceNotFoundError", KEY_NOT_FOUND) from exc
        if path and not isinstance(value, dict):
            value = {path[-1]: value}
        return {"componentName": component, "value": value}

    def update_configuration(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        path = key_path(request)
        timestamp = request.get("timestamp")
        if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
            raise invalid("Timestamp is required")
        value = request.get("valueToMerge")
        if not isinstance(value, Mapping):
            raise invalid("ValueToMerge is required")
        keys = [path[0]] if path else list(value)
        if any(str(k).lower() == ACCESS_CONTROL.lower() for k in keys):
            logger.warning("%s tried to change its own accessControl over IPC; refused", stream.component)
            raise invalid(self._nucleus.access_control_refusal)
        if self._nucleus.stale_update_fails:
            if timestamp < self._config.newest_change(stream.component, path):
                raise IpcOperationError(
                    "FailedUpdateConditionCheckError",
                    "Proposed timestamp is older than the config's latest modified timestamp",
                )
            self._config.merge(stream.component, value, path)
        else:
            self._config.merge(
                stream.component,
                value,
                path,
                timestamp=float(timestamp),
                key_by_key=self._nucleus.merges_key_by_key,
            )
        return {}

    def subscribe_to_configuration_update(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        component = request.get("componentName") or stream.component
        path = key_path(request)
        try:
            self._config.get(component, path)
        except KeyError as exc:
            raise IpcOperationError("ResourceNotFoundError", KEY_NOT_FOUND) from exc

        def listener(changed_component: str, changed: tuple[str, ...]) -> None:
            event = {"componentName": changed_component, "keyPath": list(changed)}
            stream.send_event("aws.greengrass#ConfigurationUpdateEvents", {"configurationUpdateEvent": event})

        stream.add_close_callback(self._config.subscribe(component, path, listener))
        return {}

    def subscribe_to_validate_configuration_updates(
        self, stream: Stream, request: dict[str, Any]
    ) -> dict[str, Any]:
        def send(deployment_id: str, configuration: Mapping[str, Any]) -> bool:
            event = {"configuration": dict(configuration), "deploymentId": deployment_id}
            body = {"validateConfigurationUpdateEvent": event}
            return stream.send_event("aws.greengrass#ValidateConfigurationUpdateEvents", body)

        stream.add_close_callback(self._validation.subscribe(stream.component, send))
        return {}

    def send_configuration_validity_report(self, stream: Stream, request: dict[str, Any]) -> dict[str, Any]:
        report = request.get("configurationValidityReport")
        if not isinstance(report, dict):
            raise invalid("configurationValidityReport is required")
        status = report.get("status")
        if status not in (ACCEPTED, REJECTED):
            raise invalid(f"status must be {ACCEPTED} or {REJECTED}")
        message = report.get("message")
        self._validation.report(stream.component, report.get("deploymentId"), str(status), str(message or ""))
        return {}
