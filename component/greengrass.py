"""Reading the component's own configuration from the Greengrass core over IPC."""

from __future__ import annotations

import logging
from typing import Any

from agent_client.errors import ConfigError

logger = logging.getLogger(__name__)


def read_configuration(timeout: float = 10.0) -> dict[str, Any]:
    """The whole configuration of the calling component (GetConfiguration with an empty key path)."""
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    try:
        client = GreengrassCoreIPCClientV2()
    except Exception as exc:  # awscrt's connection errors carry no stable type
        raise ConfigError(f"cannot connect to the Greengrass core to read the configuration: {exc}") from exc
    try:
        response = client.get_configuration_async(key_path=[]).result(timeout=timeout)
    except Exception as exc:  # modeled IPC errors and timeouts alike
        raise ConfigError(f"GetConfiguration failed: {type(exc).__name__}: {exc}") from exc
    finally:
        client.close()
    value = response.value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"the component configuration is not an object: {value!r}")
    logger.debug("configuration from the core: %s", value)
    return value
