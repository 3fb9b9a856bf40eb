"""Greengrass recipes (format 2020-01-25): parsing, platform/manifest selection, lifecycle normalization.

Top-level keys, manifest keys and lifecycle step names are case-insensitive, as in the nucleus. The first
manifest whose ``Platform`` matches this device wins; each platform value is exact, ``*``, or ``/regex/``.
"""

from __future__ import annotations

import json
import logging
import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gglocal.errors import RecipeError
from ggrules.semver import Version, VersionRange

logger = logging.getLogger(__name__)

RECIPE_SUFFIXES = (".json", ".yaml", ".yml")
STEP_NAMES = ("Setenv", "Bootstrap", "Install", "Run", "Startup", "Shutdown", "Recover")
DEFAULT_TIMEOUTS: dict[str, float | None] = {
    "Bootstrap": 120.0,
    "Install": 120.0,
    "Run": None,
    "Startup": 120.0,
    "Shutdown": 15.0,
    "Recover": 60.0,
}
_NAME = re.compile(r"^[a-zA-Z0-9-_.]{1,128}$")
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "i386": "x86",
}


def ci_get(mapping: Any, key: str, default: Any = None) -> Any:
    """Case-insensitive lookup in a mapping (anything else yields ``default``)."""
    if not isinstance(mapping, Mapping):
        return default
    lowered = key.lower()
    for name, value in mapping.items():
        if str(name).lower() == lowered:
            return value
    return default


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


@dataclass(frozen=True)
class Artifact:
    uri: str
    unarchive: str = "NONE"
    digest: str | None = None
    algorithm: str | None = None
    read: str = "OWNER"
    execute: str = "NONE"

    @property
    def file_name(self) -> str:
        """Last path segment of the URI: the file's name in the artifact dir."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Manifest:
    platform: Mapping[str, str]
    lifecycle: Mapping[str, Any] | None
    artifacts: tuple[Artifact, ...]
    selections: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True)
class Dependency:
    name: str
    requirement: VersionRange
    dependency_type: str = "HARD"


@dataclass(frozen=True)
class Recipe:
    name: str
    version: Version
    default_configuration: Mapping[str, Any]
    dependencies: tuple[Dependency, ...]
    manifests: tuple[Manifest, ...]
    global_lifecycle: Mapping[str, Any] | None
    description: str = ""
    publisher: str = ""
    source: Path | None = None


def current_platform() -> dict[str, str]:
    """This device's platform attributes: ``os`` and ``architecture`` (from ``uname -m``)."""
    machine = _platform.machine().lower()
    arch = _ARCHITECTURES.get(machine, "arm" if machine.startswith("arm") else machine)
    return {"os": _platform.system().lower(), "architecture": arch}


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where} must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _parse_step(name: str, raw: Any, where: str) -> Step:
    default_timeout = DEFAULT_TIMEOUTS.get(name)
    if isinstance(raw, str):
        return Step(raw, default_timeout)
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where}.{name} must be a script string or an object with Script")
    script = ci_get(raw, "Script")
    if not isinstance(script, str):
        raise RecipeError(f"{where}.{name}.Script must be a string")
    timeout = ci_get(raw, "Timeout", default_timeout)
    try:
        timeout = None if timeout is None else float(timeout)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}.{name}.Timeout must be a number of seconds") from exc
    skipif = ci_get(raw, "Skipif")
    privileged = str(ci_get(raw, "RequiresPrivilege", False)).lower() == "true"
    setenv = _str_map(ci_get(raw, "Setenv"), f"{where}.{name}.Setenv")
    return Step(script, timeout, setenv, str(skipif) if skipif else None, privileged)


def parse_lifecycle(raw: Mapping[str, Any] | None, where: str = "Lifecycle") -> Lifecycle:
    """Normalize a lifecycle: canonical step names, default timeouts; Run and Startup are exclusive."""
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    for key, value in (raw or {}).items():
        canonical = next((s for s in STEP_NAMES if s.lower() == str(key).lower()), None)
        if canonical is None:
            logger.warning("%s: ignoring unknown lifecycle key %r", where, key)
        elif canonical == "Setenv":
            setenv = _str_map(value, f"{where}.Setenv")
        else:
            steps[canonical] = _parse_step(canonical, value, where)
    if "Run" in steps and "Startup" in steps:
        raise RecipeError(f"{where}: only one of Run or Startup is allowed")
    return Lifecycle(setenv, steps)


def _parse_artifact(raw: Any, where: str) -> Artifact:
    uri = ci_get(raw, "URI")
    if not isinstance(uri, str) or not uri:
        raise RecipeError(f"{where}: every artifact needs a URI")
    permission = ci_get(raw, "Permission", {})
    return Artifact(
        uri=uri,
        unarchive=str(ci_get(raw, "Unarchive", "NONE")).upper(),
        digest=ci_get(raw, "Digest"),
        algorithm=ci_get(raw, "Algorithm"),
        read=str(ci_get(permission, "Read", "OWNER")).upper(),
        execute=str(ci_get(permission, "Execute", "NONE")).upper(),
    )


def parse_recipe(doc: Any, source: Path | None = None) -> Recipe:
    """Build a Recipe from a parsed JSON/YAML document; raises RecipeError naming the problem."""
    where = str(source or "recipe")
    if not isinstance(doc, Mapping):
        raise RecipeError(f"{where}: a recipe must be an object")
    fmt = str(ci_get(doc, "RecipeFormatVersion", "2020-01-25"))
    if fmt != "2020-01-25":
        logger.warning("%s: RecipeFormatVersion %s is not 2020-01-25", where, fmt)
    name = ci_get(doc, "ComponentName")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RecipeError(f"{where}: ComponentName must match [a-zA-Z0-9-_.]{{1,128}}, got {name!r}")
    version = Version.parse(str(ci_get(doc, "ComponentVersion", "")))
    config = ci_get(ci_get(doc, "ComponentConfiguration", {}), "DefaultConfiguration")
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise RecipeError(f"{where}: ComponentConfiguration.DefaultConfiguration must be an object")
    dependencies = []
    for dep_name, dep in (ci_get(doc, "ComponentDependencies", {}) or {}).items():
        requirement = VersionRange.parse(str(ci_get(dep, "VersionRequirement", "*")))
        dep_type = str(ci_get(dep, "DependencyType", "HARD")).upper()
        dependencies.append(Dependency(str(dep_name), requirement, dep_type))
    manifests = []
    for index, raw in enumerate(ci_get(doc, "Manifests", []) or []):
        spot = f"{where} Manifests[{index}]"
        platform = {str(k): str(v) for k, v in (ci_get(raw, "Platform", {}) or {}).items()}
        artifacts = tuple(_parse_artifact(a, spot) for a in ci_get(raw, "Artifacts", []) or [])
        selections = tuple(str(s) for s in ci_get(raw, "Selections", []) or [])
        manifests.append(
            Manifest(platform, ci_get(raw, "Lifecycle"), artifacts, selections, ci_get(raw, "Name"))
        )
    return Recipe(
        name=name,
        version=version,
        default_configuration=dict(config),
        dependencies=tuple(dependencies),
        manifests=tuple(manifests),
        global_lifecycle=ci_get(doc, "Lifecycle"),
        description=str(ci_get(doc, "ComponentDescription", "")),
        publisher=str(ci_get(doc, "ComponentPublisher", "")),
        source=source,
    )


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise RecipeError(f"{path}: YAML recipes need PyYAML: pip install 'pyyaml>=6,<7'") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc


def load_recipe(path: Path) -> Recipe:
    """Read a ``.json`` or ``.yaml``/``.yml`` recipe file (YAML needs PyYAML)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RecipeError(f"{path}: not valid JSON: {exc}") from exc
    else:
        doc = _load_yaml(text, path)
    return parse_recipe(doc, path)


def _value_matches(pattern: str, value: str | None) -> bool:
    if pattern == "*":
        return True
    if value is None:
        return False
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        try:
            return re.fullmatch(pattern[1:-1], value) is not None
        except re.error as exc:
            raise RecipeError(f"invalid platform regex {pattern}: {exc}") from exc
    return pattern.lower() == value.lower()


def platform_matches(manifest_platform: Mapping[str, str], device: Mapping[str, str]) -> bool:
    """True when every attribute of the manifest's Platform matches the device (missing attributes match)."""
    return all(_value_matches(str(v), ci_get(device, k)) for k, v in manifest_platform.items())


def select_manifest(recipe: Recipe, device: Mapping[str, str]) -> Manifest:
    """The first manifest matching ``device``; a recipe without manifests gets an empty one."""
    if not recipe.manifests:
        return Manifest({}, None, (), ())
    for manifest in recipe.manifests:
        if platform_matches(manifest.platform, device):
            return manifest
    wanted = ", ".join(f"{k}={v}" for k, v in device.items())
    raise RecipeError(f"{recipe.name} {recipe.version}: no manifest matches this platform ({wanted})")


def resolve_lifecycle(recipe: Recipe, manifest: Manifest) -> Lifecycle:
    """The manifest's Lifecycle, else the global Lifecycle (by the manifest's Selections, default ``all``)."""
    where = f"{recipe.name} Lifecycle"
    if manifest.lifecycle is not None:
        return parse_lifecycle(manifest.lifecycle, where)
    global_lifecycle = recipe.global_lifecycle
    if not isinstance(global_lifecycle, Mapping):
        return Lifecycle({}, {})
    for selection in manifest.selections or ("all",):
        selected = ci_get(global_lifecycle, selection)
        if isinstance(selected, Mapping):
            return parse_lifecycle(selected, where)
    return parse_lifecycle(global_lifecycle, where)
