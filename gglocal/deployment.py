"""Deployment planning: read a build's recipes, resolve dependencies and versions, order components.

The input is what ``greengrass-cli deployment create --recipeDir R --artifactDir A`` takes; a GDK build dir
``B`` means ``R = B/recipes`` and ``A = B/artifacts``. Dependencies must be in the recipe dir: AWS public
components (``aws.greengrass.*``, such as the nucleus, TokenExchangeService or SageMakerEdgeManager) cannot
run locally, and a deployment that needs one fails with a message saying so. Each recipe is read, checked
and its manifest chosen the way the profile's core does (``gglocal.selection``): a recipe the core refuses
fails the deployment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gglocal.errors import DeploymentError, RecipeError
from gglocal.lifecycle import Lifecycle
from gglocal.nucleus import CLASSIC, NucleusProfile
from gglocal.recipe import RECIPE_SUFFIXES, Manifest, Recipe, current_platform, load_recipe
from gglocal.selection import select

logger = logging.getLogger(__name__)

PUBLIC_PREFIXES = ("aws.greengrass.", "aws.iot.")


@dataclass(frozen=True)
class BuildSource:
    recipe_dir: Path
    artifact_dir: Path | None

    @classmethod
    def from_build_dir(cls, build_dir: Path) -> BuildSource:
        return cls(build_dir / "recipes", build_dir / "artifacts")


@dataclass(frozen=True)
class ConfigUpdate:
    """A deployment's configuration update for one component (greengrass-cli ``--update-config``)."""

    merge: Mapping[str, Any] = field(default_factory=dict)
    reset: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedComponent:
    recipe: Recipe
    manifest: Manifest
    lifecycle: Lifecycle
    dependencies: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.recipe.name


def is_public_component(name: str) -> bool:
    return name.startswith(PUBLIC_PREFIXES)


def load_recipes(recipe_dir: Path, nucleus: NucleusProfile = CLASSIC) -> dict[str, Recipe]:
    """Every ``.json``/``.yaml``/``.yml`` recipe under ``recipe_dir`` (recursively), read as the profile's
    core reads it; the newest version wins."""
    if not recipe_dir.is_dir():
        raise DeploymentError(f"recipe dir {recipe_dir} does not exist")
    recipes: dict[str, Recipe] = {}
    for path in sorted(recipe_dir.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in RECIPE_SUFFIXES:
            continue
        recipe = load_recipe(path, yaml_strings=nucleus.yaml_strings)
        known = recipes.get(recipe.name)
        if known is not None:
            newer = recipe if recipe.version > known.version else known
            logger.warning(
                "%s: versions %s and %s found; using %s",
                recipe.name,
                known.version,
                recipe.version,
                newer.version,
            )
            recipe = newer
        recipes[recipe.name] = recipe
    if not recipes:
        raise DeploymentError(f"no recipes (*.json, *.yaml) found in {recipe_dir}")
    return recipes


def _closure(recipes: Mapping[str, Recipe], targets: Iterable[str]) -> list[str]:
    """Targets plus their dependencies; raises naming every dependency that cannot be deployed."""
    wanted: list[str] = []
    public: list[str] = []
    missing: list[str] = []
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in wanted:
            continue
        wanted.append(name)
        for dep in recipes[name].dependencies:
            if dep.name in recipes:
                if not dep.requirement.matches(recipes[dep.name].version):
                    raise DeploymentError(
                        f"{name} needs {dep.name} {dep.requirement}, but the recipe dir has "
                        f"{recipes[dep.name].version}"
                    )
                stack.append(dep.name)
            elif is_public_component(dep.name):
                public.append(f"{name} depends on {dep.name}")
            else:
                missing.append(f"{name} -> {dep.name}")
    if public:
        raise DeploymentError(
            "; ".join(sorted(public))
            + ": AWS public components cannot be run locally. Deploy without the components that need"
            " them (--only NAME ...), or put a local stand-in recipe with that name in the recipe dir."
        )
    if missing:
        raise DeploymentError("dependencies not found in the recipe dir: " + ", ".join(sorted(missing)))
    return wanted


def _topological(recipes: Mapping[str, Recipe], names: list[str]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise DeploymentError("dependency cycle: " + " -> ".join((*path, name)))
        visiting.add(name)
        for dep in recipes[name].dependencies:
            visit(dep.name, (*path, name))
        visiting.discard(name)
        order.append(name)

    for name in sorted(names):
        visit(name, ())
    return order


def plan_deployment(
    recipes: Mapping[str, Recipe],
    *,
    only: Iterable[str] | None = None,
    device: Mapping[str, str] | None = None,
    nucleus: NucleusProfile = CLASSIC,
) -> list[PlannedComponent]:
    """Components to run, dependencies first. ``only`` limits the targets (their dependencies still come).
    Raises DeploymentError when the profile's core refuses a recipe or runs none of its manifests."""
    targets = list(only) if only else sorted(recipes)
    unknown = [t for t in targets if t not in recipes]
    if unknown:
        raise DeploymentError(f"unknown component(s) {unknown}; the recipe dir has {sorted(recipes)}")
    device = device or current_platform()
    planned = []
    for name in _topological(recipes, _closure(recipes, targets)):
        recipe = recipes[name]
        try:
            selected = select(recipe, device, nucleus)
        except RecipeError as exc:
            raise DeploymentError(str(exc)) from exc
        if selected.lifecycle.step("Bootstrap") is not None:
            logger.warning("%s: Bootstrap steps are not supported locally; skipped", name)
        deps = tuple(d.name for d in recipe.dependencies)
        planned.append(PlannedComponent(recipe, selected.manifest, selected.lifecycle, deps))
    return planned


def parse_update_config(value: str | Mapping[str, Any] | None) -> dict[str, ConfigUpdate]:
    """``{"<name>": {"MERGE": {...}, "RESET": ["/path"]}}`` given as a mapping, JSON text, or a JSON file."""
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise DeploymentError(f"--update-config: {text!r} is neither JSON nor an existing file")
            text = path.read_text(encoding="utf-8")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise DeploymentError(f"--update-config is not valid JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise DeploymentError("--update-config must be an object keyed by component name")
    updates = {}
    for name, update in value.items():
        if not isinstance(update, Mapping):
            raise DeploymentError(f"--update-config.{name} must be an object with MERGE and/or RESET")
        merge: Any = next((v for k, v in update.items() if k.upper() == "MERGE"), None) or {}
        reset: Any = next((v for k, v in update.items() if k.upper() == "RESET"), None) or []
        if not isinstance(merge, Mapping) or not isinstance(reset, list):
            raise DeploymentError(f"--update-config.{name}: MERGE must be an object and RESET a list")
        updates[str(name)] = ConfigUpdate(dict(merge), tuple(str(p) for p in reset))
    return updates
