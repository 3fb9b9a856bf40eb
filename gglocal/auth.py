"""IPC authorization from each component's ``accessControl`` configuration, as the nucleus does it.

Shape: ``accessControl: {<service>: {<policyId>: {operations: [...], resources: [...]}}}``.
A request is allowed when some policy of that service lists the operation (or ``*``) and a resource
that matches: the same string, a ``*`` glob (escapes ``${*}``, ``${?}``, ``${$}``), or an MQTT filter
(``+``/``#``) covering the requested topic.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gglocal.errors import IpcOperationError
from gglocal.topics import filter_covers

logger = logging.getLogger(__name__)

MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}


@dataclass(frozen=True)
class AccessPolicy:
    """One policy of one IPC service."""

    policy_id: str
    operations: tuple[str, ...]
    resources: tuple[str, ...]


def _get_ci(mapping: Mapping[str, Any], key: str) -> Any:
    lowered = key.lower()
    for name, value in mapping.items():
        if str(name).lower() == lowered:
            return value
    return None


def _as_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def parse_access_control(configuration: Mapping[str, Any] | None) -> dict[str, tuple[AccessPolicy, ...]]:
    """Policies per service from a configuration (``accessControl`` as an object or as JSON text)."""
    if not configuration:
        return {}
    raw = _get_ci(configuration, "accessControl")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            logger.warning("accessControl is a string but not JSON; ignoring it")
            return {}
    if not isinstance(raw, Mapping):
        return {}
    result: dict[str, tuple[AccessPolicy, ...]] = {}
    for service, policies in raw.items():
        if not isinstance(policies, Mapping):
            continue
        parsed = []
        for policy_id, policy in policies.items():
            if not isinstance(policy, Mapping):
                continue
            operations = _as_strings(_get_ci(policy, "operations"))
            resources = _as_strings(_get_ci(policy, "resources"))
            parsed.append(AccessPolicy(str(policy_id), operations, resources))
        result[str(service)] = tuple(parsed)
    return result


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        escape = pattern[index : index + 4]
        if escape in _ESCAPES:
            parts.append(re.escape(_ESCAPES[escape]))
            index += 4
            continue
        char = pattern[index]
        parts.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def resource_matches(policy_resource: str, requested: str, *, mqtt_wildcards: bool = True) -> bool:
    """True when a policy's resource string allows the requested resource."""
    if policy_resource == requested:
        return True
    stripped = policy_resource
    for escape in _ESCAPES:
        stripped = stripped.replace(escape, "")
    uses_glob = "*" in stripped or stripped != policy_resource
    if uses_glob and _glob_regex(policy_resource).fullmatch(requested):
        return True
    if mqtt_wildcards and ("+" in policy_resource or "#" in policy_resource):
        return filter_covers(policy_resource, requested)
    return False


def is_authorized(
    policies: Mapping[str, tuple[AccessPolicy, ...]], service: str, operation: str, resource: str
) -> bool:
    """True when any policy of ``service`` allows ``operation`` on ``resource``."""
    for policy in policies.get(service, ()):
        if operation not in policy.operations and "*" not in policy.operations:
            continue
        if any(resource_matches(allowed, resource) for allowed in policy.resources):
            return True
    return False


class Authorizer:
    """Checks requests against the caller's current configuration (which may change at run time)."""

    def __init__(self, configuration_of: Callable[[str], Mapping[str, Any] | None]) -> None:
        self._configuration_of = configuration_of

    def check(self, component: str, service: str, operation: str, resource: str) -> None:
        """Raise UnauthorizedError (as IpcOperationError) unless a policy allows the request."""
        policies = parse_access_control(self._configuration_of(component))
        if is_authorized(policies, service, operation, resource):
            return
        logger.info("denied %s %s on %s for %s", service, operation, resource, component)
        raise IpcOperationError(
            "UnauthorizedError",
            f"Principal {component} is not authorized to perform {service}:{operation}"
            f" on resource {resource}",
        )
