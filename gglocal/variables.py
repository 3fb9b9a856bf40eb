"""Recipe variable interpolation (the nucleus ``KernelConfigResolver``), applied to lifecycle scripts and env.

``{namespace:key}`` or ``{Component.Name:namespace:key}`` (direct dependencies only), namespaces:

* ``artifacts:path`` / ``artifacts:decompressedPath`` ->
  ``<root>/packages/artifacts[-unarchived]/<name>/<version>``
* ``configuration:/json/pointer`` -> the value (objects and arrays as compact JSON)
* ``work:path`` -> ``<root>/work/<name>``; ``kernel:rootPath`` -> ``<root>``; ``iot:thingName``

Anything that cannot be resolved is left as written, as the nucleus does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gglocal.configstore import lookup, split_pointer

_PLACEHOLDER = re.compile(r"\{([^{}\s]+)\}")
NAMESPACES = ("artifacts", "configuration", "work", "kernel", "iot")


@dataclass(frozen=True)
class ComponentPaths:
    """What one component contributes to interpolation."""

    name: str
    artifacts_path: Path
    decompressed_path: Path
    work_path: Path
    configuration: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VariableContext:
    component: ComponentPaths
    kernel_root: Path
    thing_name: str
    dependencies: Mapping[str, ComponentPaths] = field(default_factory=dict)


def format_value(value: Any) -> str:
    """Configuration values as the nucleus writes them: strings raw, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _component_value(paths: ComponentPaths, namespace: str, key: str) -> str | None:
    if namespace == "artifacts" and key == "path":
        return str(paths.artifacts_path)
    if namespace == "artifacts" and key == "decompressedPath":
        return str(paths.decompressed_path)
    if namespace == "work" and key == "path":
        return str(paths.work_path)
    if namespace == "configuration":
        try:
            return format_value(lookup(paths.configuration, split_pointer(key)))
        except (KeyError, ValueError):
            return None
    return None


def resolve(placeholder: str, context: VariableContext) -> str | None:
    """The value of one placeholder body (without braces), or None when it cannot be resolved."""
    first, sep, rest = placeholder.partition(":")
    if not sep:
        return None
    if first in NAMESPACES:
        namespace, key = first, rest
        if namespace == "kernel":
            return str(context.kernel_root) if key == "rootPath" else None
        if namespace == "iot":
            return context.thing_name if key == "thingName" else None
        return _component_value(context.component, namespace, key)
    namespace, sep, key = rest.partition(":")
    dependency = context.dependencies.get(first)
    if not sep or dependency is None or namespace not in ("artifacts", "configuration", "work"):
        return None
    return _component_value(dependency, namespace, key)


def expand(text: str, context: VariableContext) -> str:
    """Replace every resolvable ``{...}`` placeholder in ``text``."""

    def substitute(match: re.Match[str]) -> str:
        value = resolve(match.group(1), context)
        return match.group(0) if value is None else value

    return _PLACEHOLDER.sub(substitute, text)
