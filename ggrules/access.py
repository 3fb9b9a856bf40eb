"""IPC authorization from a component's ``accessControl`` configuration, as both cores decide it.

Shape: ``accessControl: {<service>: {<policyId>: {operations: [...], resources: [...]}}}``. A request is
allowed when some policy of that service lists the operation (or ``*``) and a resource that matches: the
same string, a ``*`` glob (escapes ``${*}``, ``${?}``, ``${$}``), or an MQTT filter (``+``/``#``) covering
the requested topic (documented for both cores; wildcards measured on both in
shared/reference/greengrass-real-cores.md). Recipe variables in a resource (``{iot:thingName}``) are
substituted first, as both cores do; one that cannot be substituted makes that resource match nothing.

gglocal's IPC server refuses with it what a core refuses; the component asks it before applying a
configuration, so a ``PublishResultsOnTopic`` its own ``accessControl`` does not allow is refused with the
reason instead of every result being refused by the core later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ggrules.topics import filter_covers
from ggrules.variables import Variable, substitute, variables_in

MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}


@dataclass(frozen=True)
class AccessPolicy:
    """One policy of one IPC service."""

    policy_id: str
    operations: tuple[str, ...]
    resources: tuple[str, ...]


Policies = Mapping[str, tuple[AccessPolicy, ...]]


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


def has_access_control(configuration: Mapping[str, Any] | None) -> bool:
    """True when the configuration holds an ``accessControl`` key at all."""
    return bool(configuration) and _get_ci(configuration or {}, "accessControl") is not None


def parse_access_control(configuration: Mapping[str, Any] | None) -> dict[str, tuple[AccessPolicy, ...]]:
    """Policies per service from a configuration (``accessControl`` as an object or as JSON text); what is
    not of the documented shape allows nothing."""
    if not configuration:
        return {}
    raw = _get_ci(configuration, "accessControl")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
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


def _interpolated(policy_resource: str, thing_name: str | None) -> str | None:
    """The resource with its recipe variables substituted, or None when one of them cannot be."""

    def value_of(variable: Variable) -> str | None:
        if variable.component is None and (variable.namespace, variable.key) == ("iot", "thingName"):
            return thing_name
        return None

    if not any(True for _ in variables_in(policy_resource)):
        return policy_resource
    result = substitute(policy_resource, value_of)
    return None if any(True for _ in variables_in(result)) else result


def is_authorized(
    policies: Policies, service: str, operation: str, resource: str, *, thing_name: str | None = None
) -> bool:
    """True when any policy of ``service`` allows ``operation`` on ``resource`` (``{iot:thingName}`` in a
    policy's resource standing for ``thing_name``)."""
    for policy in policies.get(service, ()):
        if operation not in policy.operations and "*" not in policy.operations:
            continue
        for allowed in policy.resources:
            pattern = _interpolated(allowed, thing_name)
            if pattern is not None and resource_matches(pattern, resource):
                return True
    return False


def may_publish_to_iot_core(configuration: Mapping[str, Any], topic: str, thing_name: str | None) -> bool:
    """True when the configuration's own ``accessControl`` lets its component publish on ``topic``."""
    policies = parse_access_control(configuration)
    return is_authorized(policies, MQTTPROXY, PUBLISH_TO_IOT_CORE, topic, thing_name=thing_name)
