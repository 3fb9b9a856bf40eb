"""Greengrass recipes (format 2020-01-25): reading the file and parsing it into a :class:`Recipe`.

Top-level, manifest and artifact keys are read case-insensitively, as the Java nucleus does. Nucleus lite
reads YAML with every scalar as a string (its libyaml reader makes no numbers or booleans), which
``load_recipe(..., yaml_strings=True)`` reproduces; which manifest and lifecycle a core runs is
``gglocal.selection``'s, and how the lifecycle's keys are read is ``gglocal.lifecycle``'s.
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
from gglocal.lifecycle import ci_get
from ggrules.semver import Version, VersionRange

logger = logging.getLogger(__name__)

RECIPE_SUFFIXES = (".json", ".yaml", ".yml")
_NAME = re.compile(r"^[a-zA-Z0-9-_.]{1,128}$")
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "i386": "x86",
}


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
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    size: int = 0


def current_platform() -> dict[str, str]:
    """This device's platform attributes: ``os`` and ``architecture`` (from ``uname -m``)."""
    machine = _platform.machine().lower()
    arch = _ARCHITECTURES.get(machine, "arm" if machine.startswith("arm") else machine)
    return {"os": _platform.system().lower(), "architecture": arch}


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


def parse_recipe(doc: Any, source: Path | None = None, size: int = 0) -> Recipe:
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
        document=doc,
        size=size,
    )


def _load_yaml(text: str, path: Path, strings: bool) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise RecipeError(f"{path}: YAML recipes need PyYAML: pip install 'pyyaml>=6,<7'") from exc
    try:
        return yaml.load(text, Loader=yaml.BaseLoader) if strings else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc


def load_recipe(path: Path, *, yaml_strings: bool = False) -> Recipe:
    """Read a ``.json`` or ``.yaml``/``.yml`` recipe file (YAML needs PyYAML); ``yaml_strings`` reads every
    YAML scalar as a string, as nucleus lite does."""
    data = path.read_bytes()
    text = data.decode("utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RecipeError(f"{path}: not valid JSON: {exc}") from exc
    else:
        doc = _load_yaml(text, path, yaml_strings)
    return parse_recipe(doc, path, len(data))
