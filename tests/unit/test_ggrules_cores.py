"""The cores' recipe rules (ggrules.cores): nucleus lite's manifest choice and variable reading, the Java
nucleus's platform match, and which findings make a core refuse a recipe."""

from __future__ import annotations

from typing import Any

import pytest

from ggrules.cores import check_recipe, classic_platform_matches, lite_select
from ggrules.variables import LitePart, lite_parts


def manifest(platform: dict[str, str] | None, lifecycle: dict[str, Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if platform is not None:
        found["Platform"] = platform
    if lifecycle is not None:
        found["Lifecycle"] = lifecycle
    return found


def rules(recipe: dict[str, Any], core: str, size: int = 100) -> list[tuple[str, int | None]]:
    return [(v.rule, v.manifest) for v in check_recipe(recipe, size, core)]


def test_lite_skips_manifests_without_a_runtime_it_runs_in_its_own_words() -> None:
    recipe = {
        "Manifests": [
            manifest({"os": "linux"}, {"run": "a"}),
            manifest({"os": "linux", "runtime": "aws_nucleus_classic"}, {"run": "b"}),
            manifest({"os": "linux", "runtime": "*", "architecture": "/amd64|aarch64/"}, {"run": "c"}),
            manifest({"os": "/linux/", "runtime": "*"}, {"run": "d"}),
            manifest({"runtime": "*"}, {"run": "no os"}),
            manifest({"os": "linux", "runtime": "aws_nucleus_lite", "architecture": "amd64"}, {"run": "e"}),
        ]
    }
    choice = lite_select(recipe, "amd64")
    assert choice.index == 5 and choice.lifecycle == {"run": "e"}
    assert choice.notes == (
        "Manifests[0]: Skipping manifest as it does not include a runtime platform field.",
        "Manifests[1]: Skipping manifest as it is not for aws_nucleus_lite",
    )
    assert lite_select(recipe, "aarch64").index is None
    assert lite_select(recipe, "aarch64").notes[-1] == "No lifecycle was found for linux"


def test_lite_reads_the_global_lifecycle_only_under_all_or_linux() -> None:
    platform = {"os": "*", "runtime": "*"}
    recipe = {
        "Lifecycle": {"all": {"run": "from all"}, "linux": {"run": "from linux"}, "custom": {"run": "x"}},
        "Manifests": [manifest(platform, {}) | {"Selections": ["custom"]}, {"Platform": platform}],
    }
    assert lite_select(recipe, "amd64").index == 1
    assert lite_select(recipe, "amd64").lifecycle == {"run": "from all"}
    recipe["Manifests"][0]["Selections"] = ["linux"]
    assert lite_select(recipe, "amd64").lifecycle == {"run": "from linux"}
    assert lite_select({"Manifests": [{}]}, "amd64").index is None  # no Platform: lite fails outright


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ({"os": "*", "runtime": "*"}, True),
        ({"os": "LINUX"}, True),
        ({"os": "linux", "architecture": "/amd.*/"}, True),
        ({"os": "linux", "architecture": "@ARCH@"}, False),
        ({"os": "linux", "runtime": "aws_nucleus_lite"}, False),
        ({"os": "/(/"}, False),
    ],
)
def test_classic_platform_match(platform: dict[str, str], expected: bool) -> None:
    assert classic_platform_matches(platform, {"os": "linux", "architecture": "amd64"}) is expected


def test_lite_reads_every_brace_as_a_variable() -> None:
    assert list(lite_parts("a {work:path}b ${HOME} {x")) == [
        LitePart("a "),
        LitePart("work:path", variable=True),
        LitePart("b $"),
        LitePart("HOME", variable=True),
        LitePart(" "),
        LitePart("x", variable=True, closed=False),
    ]
    assert LitePart("configuration:/A/B", variable=True).substitutable
    assert LitePart("artifacts:decompressedPath", variable=True).substitutable
    assert not LitePart("Other.Comp:artifacts:path", variable=True).substitutable
    assert not LitePart("HOME", variable=True).substitutable
    assert not LitePart("kernel:root", variable=True).substitutable


def test_lite_rules_name_what_it_refuses_and_what_it_does_differently() -> None:
    lifecycle = {
        "Setenv": {"A": "{configuration:/A}", "B": "{Other.Comp:work:path}"},
        "install": {"Script": "echo ${HOME}", "Skipif": "onpath x"},
        "run": "echo '{configuration:/A}' {Other.Comp:artifacts:path}",
        "shutdown": "echo bye",
        "Recover": "echo never",
    }
    recipe = {
        "ComponentDependencies": {"Other.Comp": {}},
        "Manifests": [
            manifest({"os": "linux"}, {"Run": "x"}),
            manifest({"os": "linux", "runtime": "*"}, lifecycle),
        ],
    }
    found = rules(recipe, "lite")
    assert ("lite-platform-runtime", 0) in found and ("lite-lifecycle-step", 0) in found
    assert ("lite-lifecycle-keys", 0) in found  # "Run" in the first manifest
    second = sorted({rule for rule, index in found if index == 1})
    assert second == [
        "lite-configuration-in-script",
        "lite-cross-component-variable",
        "lite-lifecycle-keys",
        "lite-skipif",
        "lite-unhandled-variable",
        "lite-unsupported-phase",
    ]
    # Setenv values are substituted intact: only the script's {configuration:...} is flagged
    configuration = [v for v in check_recipe(recipe, 100, "lite") if v.rule == "lite-configuration-in-script"]
    assert [v.where for v in configuration] == ["Manifests[1].Lifecycle.run"]
    refusing = {(v.rule, v.manifest) for v in check_recipe(recipe, 9000, "lite") if v.refuses}
    assert refusing == {("lite-recipe-size", None), ("lite-lifecycle-step", 0)}


def test_classic_refuses_run_with_startup_and_recipes_the_cloud_refuses() -> None:
    recipe = {"Manifests": [manifest({"os": "linux"}, {"Run": "a", "startup": "b"})]}
    refusing = {(v.rule, v.manifest) for v in check_recipe(recipe, 16001, "classic") if v.refuses}
    assert refusing == {("classic-run-and-startup", 0), ("cloud-recipe-size", None)}
    assert not [v for v in check_recipe(recipe, 100, "lite") if v.rule == "classic-run-and-startup"]
