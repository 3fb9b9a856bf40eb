"""IPC authorization: each request checked against the caller's current ``accessControl`` with the rules
both cores apply (ggrules/access.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from gglocal.errors import IpcOperationError
from ggrules.access import MQTTPROXY, PUBSUB, is_authorized, parse_access_control

__all__ = ["MQTTPROXY", "PUBSUB", "Authorizer"]

logger = logging.getLogger(__name__)


class Authorizer:
    """Checks requests against the caller's current configuration (which may change at run time)."""

    def __init__(
        self, configuration_of: Callable[[str], Mapping[str, Any] | None], thing_name: str | None = None
    ) -> None:
        self._configuration_of = configuration_of
        self._thing_name = thing_name  # what {iot:thingName} in a policy's resources stands for

    def check(self, component: str, service: str, operation: str, resource: str) -> None:
        """Raise UnauthorizedError (as IpcOperationError) unless a policy allows the request."""
        policies = parse_access_control(self._configuration_of(component))
        if is_authorized(policies, service, operation, resource, thing_name=self._thing_name):
            return
        logger.info("denied %s %s on %s for %s", service, operation, resource, component)
        raise IpcOperationError(
            "UnauthorizedError",
            f"Principal {component} is not authorized to perform {service}:{operation}"
            f" on resource {resource}",
        )
