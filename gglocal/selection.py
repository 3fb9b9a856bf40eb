"""Which recipes a core accepts, and which manifest and lifecycle it runs on this device.

``check_rules`` applies ``ggrules.cores.check_recipe`` for the profile's core: a rule that makes the core
refuse the recipe (``Violation.refuses``) fails it when it concerns the whole recipe or the manifest the core
selects; every other finding on that manifest is logged as what the core does differently. ``select`` is
the core's own choice: the Java nucleus takes the first manifest whose Platform matches (values exact, "*"
or "/regex/"; component-common PlatformHelper); nucleus lite the first with a runtime it runs, linux, and a
lifecycle (``ggrules.cores.lite_select``), logging its own words for the manifests it skips.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gglocal.errors import RecipeError
from gglocal.lifecycle import Lifecycle, ci_get, parse_lifecycle
from gglocal.nucleus import NucleusProfile
from gglocal.recipe import Manifest, Recipe
from ggrules.cores import check_recipe, classic_platform_matches, lite_select

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selected:
    """What a core runs of a recipe: the manifest (artifacts) and the lifecycle."""

    manifest: Manifest
    lifecycle: Lifecycle
    index: int | None


def _classic(recipe: Recipe, device: Mapping[str, str]) -> tuple[int | None, Mapping[str, Any] | None]:
    """The first matching manifest's index and its lifecycle (else the global one, by Selections)."""
    if not recipe.manifests:
        return None, None
    index = next(
        (i for i, m in enumerate(recipe.manifests) if classic_platform_matches(m.platform, device)), None
    )
    if index is None:
        wanted = ", ".join(f"{k}={v}" for k, v in device.items())
        raise RecipeError(f"{recipe.name} {recipe.version}: no manifest matches this platform ({wanted})")
    manifest = recipe.manifests[index]
    if manifest.lifecycle is not None:
        return index, manifest.lifecycle
    global_lifecycle = recipe.global_lifecycle
    if not isinstance(global_lifecycle, Mapping):
        return index, None
    for selection in manifest.selections or ("all",):
        selected = ci_get(global_lifecycle, selection)
        if isinstance(selected, Mapping):
            return index, selected
    return index, global_lifecycle


def _lite(recipe: Recipe, device: Mapping[str, str]) -> tuple[int | None, Mapping[str, Any] | None]:
    choice = lite_select(recipe.document, str(device.get("architecture", "")))
    for note in choice.notes:
        logger.info("%s: nucleus lite: %s", recipe.name, note)
    if choice.index is None or choice.index >= len(recipe.manifests):
        raise RecipeError(
            f"{recipe.name} {recipe.version}: nucleus lite runs none of its manifests ("
            + "; ".join(choice.notes)
            + '); a manifest needs "runtime": "*" (or "aws_nucleus_lite"), os linux, * or all, and a '
            "lifecycle"
        )
    return choice.index, choice.lifecycle


def check_rules(recipe: Recipe, index: int | None, nucleus: NucleusProfile) -> None:
    """Refuse what the core refuses (RecipeError naming each rule); log what it does differently."""
    refused = []
    for violation in check_recipe(recipe.document, recipe.size, nucleus.core):
        if violation.manifest is not None and violation.manifest != index:
            continue
        if violation.refuses:
            refused.append(str(violation))
        else:
            logger.warning("%s: %s", recipe.name, violation)
    if refused:
        raise RecipeError(f"{recipe.name} {recipe.version}: {nucleus.name} refuses it: " + "; ".join(refused))


def select(recipe: Recipe, device: Mapping[str, str], nucleus: NucleusProfile) -> Selected:
    """The manifest and lifecycle the profile's core runs, after its rules; RecipeError when it refuses."""
    index, raw = _lite(recipe, device) if nucleus.exact_keys else _classic(recipe, device)
    check_rules(recipe, index, nucleus)
    manifest = recipe.manifests[index] if index is not None else Manifest({}, None, (), ())
    lifecycle = parse_lifecycle(raw, f"{recipe.name} Lifecycle", exact=nucleus.exact_keys)
    return Selected(manifest, lifecycle, index)
