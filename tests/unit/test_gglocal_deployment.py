"""Deployment planning: dependency order, versions, public components, --only, --update-config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gglocal.deployment import load_recipes, parse_update_config, plan_deployment
from gglocal.errors import DeploymentError
from gglocal.recipe import Recipe, parse_recipe

LINUX = {"os": "linux", "architecture": "amd64"}


def recipe(name: str, version: str = "1.0.0", deps: dict[str, str] | None = None) -> Recipe:
    doc: dict[str, Any] = {
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": {d: {"VersionRequirement": r} for d, r in (deps or {}).items()},
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "true"}}],
    }
    return parse_recipe(doc)


def recipes(*items: Recipe) -> dict[str, Recipe]:
    return {r.name: r for r in items}


def test_dependencies_come_first() -> None:
    found = recipes(
        recipe("app", deps={"agent": ">=1.0.0 <2.0.0", "model": "^1.0.0"}),
        recipe("agent", "1.4.0", deps={"model": "~1.0.0"}),
        recipe("model", "1.0.3"),
    )
    assert [p.name for p in plan_deployment(found, device=LINUX)] == ["model", "agent", "app"]


def test_public_dependency_fails_with_a_clear_message() -> None:
    found = recipes(
        recipe("app", deps={"aws.greengrass.SageMakerEdgeManager": ">=1.0.0", "aws.greengrass.Nucleus": "*"})
    )
    with pytest.raises(DeploymentError) as info:
        plan_deployment(found, device=LINUX)
    message = str(info.value)
    assert "aws.greengrass.SageMakerEdgeManager" in message and "aws.greengrass.Nucleus" in message
    assert "cannot be run locally" in message and "--only" in message


def test_only_excludes_components_that_need_public_ones() -> None:
    found = recipes(recipe("edge", deps={"aws.greengrass.TokenExchangeService": "*"}), recipe("app"))
    assert [p.name for p in plan_deployment(found, only=["app"], device=LINUX)] == ["app"]


def test_only_pulls_in_local_dependencies() -> None:
    found = recipes(recipe("app", deps={"model": "*"}), recipe("model"), recipe("other"))
    assert [p.name for p in plan_deployment(found, only=["app"], device=LINUX)] == ["model", "app"]


def test_unmet_version_requirement_fails() -> None:
    found = recipes(recipe("app", deps={"model": ">=2.0.0"}), recipe("model", "1.9.0"))
    with pytest.raises(DeploymentError, match=r"needs model >=2\.0\.0.*1\.9\.0"):
        plan_deployment(found, device=LINUX)


def test_missing_private_dependency_and_unknown_only_fail() -> None:
    with pytest.raises(DeploymentError, match="not found in the recipe dir"):
        plan_deployment(recipes(recipe("app", deps={"com.example.Gone": "*"})), device=LINUX)
    with pytest.raises(DeploymentError, match="unknown component"):
        plan_deployment(recipes(recipe("app")), only=["nope"], device=LINUX)


def test_dependency_cycle_is_reported() -> None:
    with pytest.raises(DeploymentError, match="cycle"):
        plan_deployment(recipes(recipe("a", deps={"b": "*"}), recipe("b", deps={"a": "*"})), device=LINUX)


def test_no_manifest_for_platform_fails_the_deployment() -> None:
    found = recipes(recipe("app"))
    with pytest.raises(DeploymentError, match="no manifest matches"):
        plan_deployment(found, device={"os": "windows", "architecture": "amd64"})


def test_load_recipes_walks_json_and_yaml_and_keeps_the_newest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for version in ("1.0.0", "1.2.0"):
        (tmp_path / f"a-{version}.json").write_text(
            json.dumps({"ComponentName": "a", "ComponentVersion": version})
        )
    (tmp_path / "sub" / "b.yaml").write_text("ComponentName: b\nComponentVersion: 0.1.0\n")
    (tmp_path / "notes.txt").write_text("ignored")
    found = load_recipes(tmp_path)
    assert sorted(found) == ["a", "b"]
    assert str(found["a"].version) == "1.2.0"


def test_update_config_accepts_json_text_and_files(tmp_path: Path) -> None:
    text = '{"app": {"MERGE": {"Interval": "1"}, "RESET": ["/Old"]}, "other": {"merge": {"x": 1}}}'
    updates = parse_update_config(text)
    assert updates["app"].merge == {"Interval": "1"} and updates["app"].reset == ("/Old",)
    assert updates["other"].merge == {"x": 1}
    path = tmp_path / "update.json"
    path.write_text(text)
    assert parse_update_config(str(path)) == updates
    with pytest.raises(DeploymentError):
        parse_update_config("not-a-file-or-json")
