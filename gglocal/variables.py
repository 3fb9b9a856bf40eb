"""Recipe variable interpolation (the nucleus ``KernelConfigResolver``), applied to lifecycle scripts and env.

``{namespace:key}`` or ``{Component.Name:namespace:key}`` (direct dependencies only), namespaces:

* ``artifacts:path`` / ``artifacts:decompressedPath`` ->
  ``<root>/packages/artifacts[-unarchived]/<name>/<version>``
* ``configuration:/json/pointer`` -> the value (objects and arrays as compact JSON)
* ``work:path`` -> ``<root>/work/<name>``; ``kernel:rootPath`` -> ``<root>``; ``iot:thingName``

Anything that cannot be resolved is left as written, as the Java nucleus does. ``resolve_lite`` is nucleus
lite's reading of one ``{...}`` (``ggrules.variables.lite_parts``): own-component variables only, folders
ending in ``/``, configuration values as they are now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gglocal.configstore import lookup
from ggrules.variables import LitePart, Variable, pointer_parts, substitute


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
            return format_value(lookup(paths.configuration, pointer_parts(key)))
        except (KeyError, ValueError):
            return None
    return None


def resolve(variable: Variable, context: VariableContext) -> str | None:
    """The value of one variable, or None when it cannot be resolved."""
    if not variable.known:
        return None
    if variable.component is not None:
        dependency = context.dependencies.get(variable.component)
        return None if dependency is None else _component_value(dependency, variable.namespace, variable.key)
    if variable.namespace == "kernel":
        return str(context.kernel_root)
    if variable.namespace == "iot":
        return context.thing_name
    return _component_value(context.component, variable.namespace, variable.key)


def expand(text: str, context: VariableContext) -> str:
    """Replace every resolvable ``{...}`` variable in ``text``."""
    return substitute(text, lambda variable: resolve(variable, context))


def resolve_lite(part: LitePart, context: VariableContext) -> str | None:
    """What nucleus lite writes for one ``{...}``, or None where it fails (and cuts the script off)."""
    if not part.substitutable:
        return None
    paths = context.component
    folders = {
        ("work", "path"): paths.work_path,
        ("artifacts", "path"): paths.artifacts_path,
        ("artifacts", "decompressedPath"): paths.decompressed_path,
    }
    if (part.namespace, part.key) in folders:
        return f"{folders[(part.namespace, part.key)]}/"
    if part.namespace == "kernel":
        return str(context.kernel_root)
    if part.namespace == "iot":
        return context.thing_name
    try:
        return format_value(lookup(paths.configuration, pointer_parts(part.key)))
    except (KeyError, ValueError):
        return None
