"""The component's one IPC connection to the Greengrass core, shared by the publisher, the configuration feed
and the health reports (awsiotsdk's GreengrassCoreIPCClientV2 over the core's unix socket).

- Made on first use and made again after the core closed it; every call waits at most `timeout` seconds.
- The SDK runs stream callbacks without its executor (executor=None): they only set flags or hand work to
  the component's own threads, and nothing is scheduled on an executor that `close()` has shut down (the
  SDK's executor turns a stream closed during shutdown into "RuntimeError: cannot schedule new futures
  after shutdown" with a traceback).
- Errors become the project's own by their type, never by their text: nucleus lite sends errors without a
  `message` field, so the SDK's exceptions have empty text there.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_client.errors import (
    CoreError,
    CoreUnsupportedError,
    EdgeError,
    PublishDeniedError,
    PublishRejectedError,
)

logger = logging.getLogger(__name__)

IPC_SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
CALL_TIMEOUT_S = 10.0


def under_greengrass() -> bool:
    """Whether a Greengrass core started this process (both cores set these two)."""
    import os

    return bool(os.environ.get("SVCUID")) and bool(os.environ.get(IPC_SOCKET_ENV))


@dataclass
class Subscription:
    """An open stream: close() ends it (the core stops sending events)."""

    what: str
    operation: Any

    def close(self) -> None:
        try:
            self.operation.close()
        except Exception as exc:  # closing a stream of a dead connection fails in awscrt's own ways
            logger.debug("closing the %s stream: %s", self.what, exc)


class CoreConnection:
    """See the module docstring. Thread-safe."""

    def __init__(self, timeout: float = CALL_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.connects = 0
        self.failures = 0
        self._client: Any = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the connection -------------------------------------------------------------------------------

    def _connected(self) -> Any:
        with self._lock:
            if self._closed:
                raise CoreError("the IPC connection to the Greengrass core is closed")
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        from awsiot import greengrasscoreipc
        from awsiot.eventstreamrpc import LifecycleHandler
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        connection = self

        class Disconnect(LifecycleHandler):  # type: ignore[misc]
            def on_disconnect(self, reason: Exception | None) -> None:
                connection._dropped(reason)

        try:
            raw = greengrasscoreipc.connect(lifecycle_handler=Disconnect(), timeout=self.timeout)
        except Exception as exc:  # awscrt raises its own untyped errors for connection failures
            self.failures += 1
            raise CoreError(
                f"cannot connect to the Greengrass core over IPC ({type(exc).__name__}); is the component "
                f"running under Greengrass, and is the core up?"
            ) from exc
        self.connects += 1
        logger.info("connected to the Greengrass core over IPC")
        return GreengrassCoreIPCClientV2(client=raw, executor=None)

    def _dropped(self, reason: Exception | None) -> None:
        with self._lock:
            if self._client is not None and not self._closed:
                logger.warning(
                    "the Greengrass core closed the IPC connection (%s); reconnecting on next use",
                    type(reason).__name__ if reason else "no reason given",
                )
            self._client = None

    def _forget(self, client: Any) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        try:
            client.close(executor_wait=False)
        except Exception as exc:  # closing a broken connection may fail again; nothing left to do
            logger.debug("closing the IPC client: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close(executor_wait=False)
            except Exception as exc:  # the core may be gone already
                logger.debug("closing the IPC client: %s", exc)

    # -- calls ----------------------------------------------------------------------------------------

    def _call(self, what: str, start: Callable[[Any], concurrent.futures.Future[Any]]) -> Any:
        client = self._connected()
        try:
            return start(client).result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self.failures += 1
            raise CoreError(f"{what}: the Greengrass core did not answer within {self.timeout:g} s") from None
        except Exception as exc:  # modeled IPC errors, connection loss: translated by type below
            self.failures += 1
            error = _translate(what, exc)
            if not _modeled(exc):
                self._forget(client)
            raise error from exc

    def get_configuration(self, component: str | None = None) -> dict[str, Any]:
        """The whole configuration of this component (or another one's: no policy is needed for that)."""
        response = self._call(
            "GetConfiguration",
            lambda c: c.get_configuration_async(component_name=component, key_path=[]),
        )
        value = response.value or {}
        if not isinstance(value, dict):
            raise CoreError(
                f"GetConfiguration: the configuration is not an object but {type(value).__name__}"
            )
        return value

    def update_state(self, state: str) -> None:
        self._call("UpdateState", lambda c: c.update_state_async(state=state))

    def publish_to_iot_core(self, topic: str, payload: bytes) -> None:
        from awsiot.greengrasscoreipc.model import QOS

        self._call(
            f"PublishToIoTCore on {topic!r}",
            lambda c: c.publish_to_iot_core_async(topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=payload),
        )

    def subscribe_to_configuration_updates(
        self, on_event: Callable[[Any], None], on_closed: Callable[[], None]
    ) -> Subscription:
        return self._subscribe("SubscribeToConfigurationUpdate", on_event, on_closed, key_path=[])

    def subscribe_to_validate_configuration_updates(
        self, on_event: Callable[[Any], None], on_closed: Callable[[], None]
    ) -> Subscription:
        """CoreUnsupportedError where the core offers no validation (nucleus lite)."""
        return self._subscribe("SubscribeToValidateConfigurationUpdates", on_event, on_closed)

    def send_configuration_validity_report(self, deployment_id: str, accepted: bool, message: str) -> None:
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport, ConfigurationValidityStatus

        report = ConfigurationValidityReport(
            status=ConfigurationValidityStatus.ACCEPTED if accepted else ConfigurationValidityStatus.REJECTED,
            deployment_id=deployment_id,
            message=message,
        )
        self._call(
            "SendConfigurationValidityReport",
            lambda c: c.send_configuration_validity_report_async(configuration_validity_report=report),
        )

    def _subscribe(
        self, operation: str, on_event: Callable[[Any], None], on_closed: Callable[[], None], **request: Any
    ) -> Subscription:
        client = self._connected()
        method = getattr(client, _snake(operation) + "_async")
        try:
            future, stream = method(
                on_stream_event=on_event,
                on_stream_error=lambda error: _keep_open(operation, error),
                on_stream_closed=on_closed,
                **request,
            )
            future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise CoreError(
                f"{operation}: the Greengrass core did not answer within {self.timeout:g} s"
            ) from None
        except Exception as exc:  # translated by type
            error = _translate(operation, exc)
            if _modeled(exc) and type(exc).__name__ == "ServiceError":
                raise CoreUnsupportedError(f"{operation}: this Greengrass core does not offer it") from exc
            if not _modeled(exc):
                self._forget(client)
            raise error from exc
        return Subscription(operation, stream)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _keep_open(operation: str, error: Exception) -> bool:
    logger.warning("%s stream error (%s); keeping the stream open", operation, type(error).__name__)
    return False


def _modeled(exc: Exception) -> bool:
    """An error the core answered with (the connection is fine), as opposed to a broken connection."""
    from awsiot.greengrasscoreipc import model

    return isinstance(exc, model.GreengrassCoreIPCError)


def _translate(what: str, exc: Exception) -> EdgeError:
    """The project's error for an IPC failure, chosen by the exception's type (its text may be empty)."""
    name = type(exc).__name__
    if name == "UnauthorizedError":
        if what.startswith("PublishToIoTCore"):
            return PublishDeniedError(
                f"the core refused {what}: the topic is not in the component's accessControl "
                f"(aws.greengrass.ipc.mqttproxy); merge the topic into accessControl or publish elsewhere"
            )
        return CoreError(f"{what}: the core says the component is not authorized")
    if name == "InvalidArgumentsError":
        if what.startswith("PublishToIoTCore"):
            return PublishRejectedError(f"the core refused {what} as invalid (topic or payload); dropped")
        return CoreError(f"{what}: the core refused the request as invalid")
    if _modeled(exc):
        return CoreError(f"{what}: the core answered {name}")
    return CoreError(f"{what}: the IPC connection failed ({name}); it is made again on the next call")
