"""Lifecycle steps as each core reads them from a recipe.

The Java nucleus reads step names and step keys case-insensitively (``Run``, ``run``, ``RUN``); nucleus lite
reads them as written (``install``, ``run``, ``startup``, ``shutdown``, ``Setenv``; ``Script``, ``Setenv``,
``Timeout``, ``RequiresPrivilege``) and ignores anything else, runs no ``shutdown``, ``recover`` or
``Skipif``, and runs ``startup`` when a lifecycle has both it and ``run`` (recipe2unit). Both come out as the
same :class:`Lifecycle` with canonical step names, so the runner has one shape to run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gglocal.errors import RecipeError
from ggrules.cores import LITE_LIFECYCLE_KEYS

logger = logging.getLogger(__name__)

STEP_NAMES = ("Setenv", "Bootstrap", "Install", "Run", "Startup", "Shutdown", "Recover")
DEFAULT_TIMEOUTS: dict[str, float | None] = {
    "Bootstrap": 120.0,
    "Install": 120.0,
    "Run": None,
    "Startup": 120.0,
    "Shutdown": 15.0,
    "Recover": 60.0,
}
LITE_NOT_RUN = {
    "shutdown": "'shutdown' phase isn't currently supported by Greengrass nucleus lite",
    "recover": "'recover' phase isn't currently supported by Greengrass nucleus lite",
}


def ci_get(mapping: Any, key: str, default: Any = None) -> Any:
    """Case-insensitive lookup in a mapping (anything else yields ``default``), as the Java nucleus reads."""
    if not isinstance(mapping, Mapping):
        return default
    lowered = key.lower()
    for name, value in mapping.items():
        if str(name).lower() == lowered:
            return value
    return default


def exact_get(mapping: Any, key: str, default: Any = None) -> Any:
    """Lookup by the key as written, as nucleus lite reads."""
    return mapping.get(key, default) if isinstance(mapping, Mapping) else default


@dataclass(frozen=True)
class Step:
    """One lifecycle step; ``timeout`` None means no timeout (Run)."""

    script: str
    timeout: float | None = None
    setenv: Mapping[str, str] = field(default_factory=dict)
    skipif: str | None = None
    requires_privilege: bool = False


@dataclass(frozen=True)
class Lifecycle:
    setenv: Mapping[str, str]
    steps: Mapping[str, Step]

    def step(self, name: str) -> Step | None:
        return self.steps.get(name)


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where} must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _timeout(value: Any, where: str) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}.Timeout must be a number of seconds") from exc


def _parse_step(name: str, raw: Any, where: str, *, exact: bool) -> Step:
    get = exact_get if exact else ci_get
    default_timeout = DEFAULT_TIMEOUTS.get(name)
    if isinstance(raw, str):
        return Step(raw, default_timeout)
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where}.{name} must be a script string or an object with Script")
    script = get(raw, "Script")
    if not isinstance(script, str):
        raise RecipeError(f"{where}.{name}.Script must be a string (Script is not in the map)")
    timeout = _timeout(get(raw, "Timeout", default_timeout), f"{where}.{name}")
    skipif = None if exact else ci_get(raw, "Skipif")
    if exact and "Skipif" in raw:
        logger.warning("%s.%s: nucleus lite does not read Skipif; the step always runs", where, name)
    privileged = str(get(raw, "RequiresPrivilege", False)).lower() == "true"
    setenv = _str_map(get(raw, "Setenv"), f"{where}.{name}.Setenv")
    return Step(script, timeout, setenv, str(skipif) if skipif else None, privileged)


def parse_lifecycle(
    raw: Mapping[str, Any] | None, where: str = "Lifecycle", *, exact: bool = False
) -> Lifecycle:
    """Normalize a lifecycle: canonical step names, default timeouts. ``exact`` reads it as nucleus lite does;
    otherwise keys are case-insensitive and Run and Startup are exclusive, as in the Java nucleus."""
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    for key, value in (raw or {}).items():
        key = str(key)
        if exact and key not in (*LITE_LIFECYCLE_KEYS, "bootstrap", "recover"):
            canonical = None
        else:
            canonical = next((s for s in STEP_NAMES if s.lower() == key.lower()), None)
        if canonical is None:
            logger.warning("%s: ignoring unknown lifecycle key %r", where, key)
        elif exact and key in LITE_NOT_RUN:
            logger.warning("%s: %s", where, LITE_NOT_RUN[key])
        elif canonical == "Setenv":
            setenv = _str_map(value, f"{where}.Setenv")
        else:
            steps[canonical] = _parse_step(canonical, value, where, exact=exact)
    if "Run" in steps and "Startup" in steps:
        if not exact:
            raise RecipeError(f"{where}: only one of Run or Startup is allowed")
        logger.warning("%s: both run and startup; nucleus lite runs startup only", where)
        del steps["Run"]
    return Lifecycle(setenv, steps)
