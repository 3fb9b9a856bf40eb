"""Errors raised by the local Greengrass stand-in (``gglocal``).

All derive from :class:`agent_client.errors.EdgeError` through :class:`GgLocalError`:

    GgLocalError
    +-- FramingError        malformed event-stream frame (bad CRC, length, header type); connection closed
    +-- IpcOperationError   a modeled IPC error (UnauthorizedError, ...) sent to the client
        +-- OutboxError         the outbox cannot store a message (disk full): answered ServiceError
        +-- MqttNotReadyError   nucleus lite's MQTT client cannot take a message now (not connected, or
                                no room for one more unacknowledged QoS 1 publish): answered ServiceError
    +-- DeploymentError     a deployment cannot be carried out (missing or public dependency, unmet version)
        +-- ArtifactError       artifact missing, digest mismatch, or unsafe archive (zip-slip)
        +-- ConfigurationValidationError  a component rejected the deployment's configuration (or did not
                                answer in time); the old configuration stays
    +-- ControlError        the control socket of a running stand-in cannot be reached, or a command failed

``RecipeError`` (unparsable recipe, no manifest for this platform, a rule of the core broken, bad version
range) is the project's own, shared with build.py: ``agent_client.errors.RecipeError``, re-exported here.
"""

from __future__ import annotations

from agent_client.errors import EdgeError, RecipeError


class GgLocalError(EdgeError):
    """Root of the local Greengrass stand-in's errors."""


class FramingError(GgLocalError):
    """An event-stream frame is malformed: CRC mismatch, impossible lengths, unknown header type."""


class IpcOperationError(GgLocalError):
    """A modeled Greengrass IPC error to send back to the client as APPLICATION_ERROR.

    ``error_name`` is the model shape, e.g. ``UnauthorizedError``; ``message`` is what the client sees.
    """

    def __init__(self, error_name: str, message: str) -> None:
        super().__init__(f"{error_name}: {message}")
        self.error_name = error_name
        self.message = message


class OutboxError(IpcOperationError):
    """The outbox cannot store a message bound for IoT Core (disk full, database error).

    The publisher is answered ``ServiceError``, as the Java nucleus answers when its spooler cannot take a
    message; the message was not accepted (nothing accepted is ever lost).
    """

    def __init__(self, message: str) -> None:
        super().__init__("ServiceError", message)


class MqttNotReadyError(IpcOperationError):
    """Nucleus lite's iotcored cannot take a message now: its MQTT connection is down, or it holds as many
    unacknowledged QoS 1 publishes as it has room for.

    The publisher is answered ``ServiceError`` (lite: "not connected" / "no memory") at once; nothing is
    stored or sent later: the component must keep the message and try again.
    """

    def __init__(self, message: str) -> None:
        super().__init__("ServiceError", message)


class DeploymentError(GgLocalError):
    """A deployment cannot be carried out; the message says which component and how to fix it."""


class ArtifactError(DeploymentError):
    """An artifact is missing from the artifact dir, fails its digest check, or is an unsafe archive."""


class ConfigurationValidationError(DeploymentError):
    """A component reported the configuration a deployment proposes invalid, or did not report in time
    (SendConfigurationValidityReport); the message is the nucleus's, with the component's own words."""


class ControlError(GgLocalError):
    """The control socket of a running stand-in cannot be reached, or it refused a command."""


__all__ = [
    "ArtifactError",
    "ConfigurationValidationError",
    "ControlError",
    "DeploymentError",
    "FramingError",
    "GgLocalError",
    "IpcOperationError",
    "MqttNotReadyError",
    "OutboxError",
    "RecipeError",
]
