"""Recipe parsing, case-insensitive keys, the Java nucleus's manifest/platform selection and lifecycle
normalization (nucleus lite's: test_gglocal_selection.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gglocal.errors import RecipeError
from gglocal.lifecycle import Lifecycle, parse_lifecycle
from gglocal.nucleus import CLASSIC
from gglocal.recipe import Manifest, Recipe, current_platform, load_recipe, parse_recipe
from gglocal.selection import select
from ggrules.cores import classic_platform_matches

LINUX_AMD64 = {"os": "linux", "architecture": "amd64"}


def select_manifest(recipe: Recipe, device: dict[str, str]) -> Manifest:
    return select(recipe, device, CLASSIC).manifest


def resolve_lifecycle(recipe: Recipe, device: dict[str, str] = LINUX_AMD64) -> Lifecycle:
    return select(recipe, device, CLASSIC).lifecycle


def recipe_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.App",
        "ComponentVersion": "1.2.3",
        "ComponentConfiguration": {"DefaultConfiguration": {"Interval": "5"}},
        "ComponentDependencies": {
            "com.example.Model": {"VersionRequirement": "~2.0.0", "DependencyType": "SOFT"}
        },
        "Manifests": [
            {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "win.exe"}},
            {
                "Platform": {"os": "linux", "architecture": "/amd64|aarch64/"},
                "Lifecycle": {"Run": "echo linux"},
                "Artifacts": [
                    {"URI": "s3://bucket/app/app.zip", "Unarchive": "ZIP", "Permission": {"Execute": "ALL"}}
                ],
            },
            {"Platform": {"os": "*"}, "Lifecycle": {"Run": "echo fallback"}},
        ],
    }
    doc.update(overrides)
    return doc


def test_fields_are_parsed() -> None:
    recipe = parse_recipe(recipe_doc())
    assert recipe.name == "com.example.App"
    assert str(recipe.version) == "1.2.3"
    assert recipe.default_configuration == {"Interval": "5"}
    (dep,) = recipe.dependencies
    assert (dep.name, dep.dependency_type, dep.requirement.matches("2.0.9")) == (
        "com.example.Model",
        "SOFT",
        True,
    )


def test_top_level_and_nested_keys_are_case_insensitive() -> None:
    doc = {
        "recipeformatversion": "2020-01-25",
        "componentname": "lower.case",
        "COMPONENTVERSION": "0.0.1",
        "componentConfiguration": {"defaultconfiguration": {"Key": "v"}},
        "manifests": [{"platform": {"OS": "linux"}, "lifecycle": {"run": {"script": "x", "timeout": 3}}}],
    }
    recipe = parse_recipe(doc)
    lifecycle = resolve_lifecycle(recipe)
    assert recipe.default_configuration == {"Key": "v"}
    assert lifecycle.steps["Run"].script == "x"
    assert lifecycle.steps["Run"].timeout == 3


def test_first_matching_manifest_wins() -> None:
    recipe = parse_recipe(recipe_doc())
    manifest = select_manifest(recipe, LINUX_AMD64)
    assert manifest.artifacts[0].file_name == "app.zip"
    assert manifest.artifacts[0].execute == "ALL"
    assert resolve_lifecycle(recipe).steps["Run"].script == "echo linux"
    other = {"os": "darwin", "architecture": "amd64"}
    assert resolve_lifecycle(recipe, other).steps["Run"].script == "echo fallback"


def test_no_matching_manifest_is_a_recipe_error() -> None:
    recipe = parse_recipe(recipe_doc(Manifests=[{"Platform": {"os": "windows"}}]))
    with pytest.raises(RecipeError, match="no manifest matches"):
        select_manifest(recipe, LINUX_AMD64)


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ({}, True),
        ({"os": "linux"}, True),
        ({"os": "Linux"}, True),
        ({"os": "*", "architecture": "*"}, True),
        ({"architecture": "/aarch64|amd64/"}, True),
        ({"architecture": "/arm.*/"}, False),
        ({"architecture": "aarch64"}, False),
        ({"architecture.detail": "arm71"}, False),
        ({"architecture.detail": "*"}, True),
        ({"os": "-linux"}, False),
        ({"os": "/lin(/"}, False),
        ({"runtime": "*"}, True),
        ({"runtime": "aws_nucleus_lite"}, False),
    ],
)
def test_platform_matching(platform: dict[str, str], expected: bool) -> None:
    assert classic_platform_matches(platform, LINUX_AMD64) is expected


def test_current_platform_maps_uname_machine() -> None:
    device = current_platform()
    assert device["os"] == "linux"
    assert device["architecture"] in ("amd64", "aarch64", "arm", "x86")


def test_global_lifecycle_is_used_through_selections() -> None:
    doc = recipe_doc(
        Manifests=[{"Platform": {"os": "linux"}, "Selections": ["linux"]}],
        Lifecycle={"all": {"Run": "all"}, "linux": {"Run": "from selection"}},
    )
    recipe = parse_recipe(doc)
    assert resolve_lifecycle(recipe).steps["Run"].script == "from selection"


def test_lifecycle_steps_get_defaults_and_setenv() -> None:
    lifecycle = parse_lifecycle(
        {
            "setenv": {"A": "1", "N": 2},
            "install": {"Script": "pip", "Skipif": "onpath pip", "Setenv": {"B": "2"}},
            "startup": "start",
            "shutdown": "stop",
        }
    )
    assert lifecycle.setenv == {"A": "1", "N": "2"}
    assert lifecycle.steps["Install"].timeout == 120
    assert lifecycle.steps["Install"].skipif == "onpath pip"
    assert lifecycle.steps["Install"].setenv == {"B": "2"}
    assert lifecycle.steps["Startup"].timeout == 120
    assert lifecycle.steps["Shutdown"].timeout == 15


def test_run_and_startup_together_are_rejected() -> None:
    with pytest.raises(RecipeError, match="only one of Run or Startup"):
        parse_lifecycle({"Run": "a", "Startup": "b"})


@pytest.mark.parametrize(
    "override",
    [
        {"ComponentName": "bad name!"},
        {"ComponentVersion": "1.0"},
        {"ComponentConfiguration": {"DefaultConfiguration": []}},
    ],
)
def test_invalid_recipes_are_rejected(override: dict[str, Any]) -> None:
    with pytest.raises(RecipeError):
        parse_recipe(recipe_doc(**override))


def test_yaml_recipe_loads(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "RecipeFormatVersion: '2020-01-25'\nComponentName: y.Comp\nComponentVersion: 1.0.0\n"
        "Manifests:\n  - Platform: {os: linux}\n    Lifecycle:\n      Run: echo hi\n"
    )
    recipe = load_recipe(path)
    assert recipe.name == "y.Comp"
    assert resolve_lifecycle(recipe).steps["Run"].script == "echo hi"


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(RecipeError, match=r"bad\.json"):
        load_recipe(path)
