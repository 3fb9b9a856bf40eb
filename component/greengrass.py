"""The component's configuration from the Greengrass core over IPC: read it, and watch it change.

`read_configuration()` is GetConfiguration of the calling component's whole configuration.
`ConfigurationWatcher` holds a SubscribeToConfigurationUpdate stream; each event only raises a flag
(IPC callbacks run on the SDK's thread pool), and the run loop re-reads the configuration between frames.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agent_client.errors import ConfigError

logger = logging.getLogger(__name__)


def _connect() -> Any:
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    try:
        return GreengrassCoreIPCClientV2()
    except Exception as exc:  # awscrt's connection errors carry no stable type
        raise ConfigError(f"cannot connect to the Greengrass core over IPC: {exc}") from exc


def read_configuration(client: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    """The whole configuration of the calling component (GetConfiguration with an empty key path)."""
    own = client is None
    client = client or _connect()
    try:
        response = client.get_configuration_async(key_path=[]).result(timeout=timeout)
    except Exception as exc:  # modeled IPC errors and timeouts alike
        raise ConfigError(f"GetConfiguration failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            client.close()
    value = response.value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"the component configuration is not an object: {value!r}")
    return value


class ConfigurationWatcher:
    """Flags configuration changes pushed by the core; `changed()` returns the new configuration once."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._client: Any = None
        self._changed = threading.Event()

    def start(self) -> None:
        self._client = _connect()
        try:
            future, _operation = self._client.subscribe_to_configuration_update_async(
                key_path=[],
                on_stream_event=self._on_event,
                on_stream_error=self._on_error,
                on_stream_closed=lambda: logger.info("configuration update stream closed"),
            )
            future.result(timeout=self._timeout)
        except Exception as exc:  # modeled IPC errors and timeouts alike
            raise ConfigError(f"SubscribeToConfigurationUpdate failed: {type(exc).__name__}: {exc}") from exc
        logger.info("watching the component configuration for updates")

    def _on_event(self, event: Any) -> None:
        update = getattr(event, "configuration_update_event", None)
        logger.info("configuration updated: %s", getattr(update, "key_path", None))
        self._changed.set()

    def _on_error(self, error: Exception) -> bool:
        logger.warning("configuration update stream error: %s", error)
        return False  # keep the stream open

    def changed(self) -> dict[str, Any] | None:
        """The new configuration if an update arrived since the last call, else None."""
        if not self._changed.is_set():
            return None
        self._changed.clear()
        return read_configuration(self._client, self._timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
