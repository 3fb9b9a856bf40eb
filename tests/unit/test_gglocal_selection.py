"""Recipes read, checked and selected as each core does: nucleus lite's case-sensitive lifecycle, its
manifest choice and refusals in its own words, its YAML scalars as strings; the Java nucleus's rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gglocal.deployment import load_recipes, plan_deployment
from gglocal.errors import DeploymentError, RecipeError
from gglocal.nucleus import CLASSIC, LITE
from gglocal.recipe import parse_recipe
from gglocal.selection import select

AMD64 = {"os": "linux", "architecture": "amd64"}


def doc(lifecycle: dict[str, Any], platform: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "ComponentName": "com.example.P",
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": platform or {"os": "linux", "runtime": "*"}, "Lifecycle": lifecycle}],
        **extra,
    }


def test_lite_reads_lifecycle_keys_as_written_and_ignores_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = {
        "Setenv": {"A": "1"},
        "install": {"Script": "i", "Timeout": "7", "Skipif": "onpath sh", "timeout": 1},
        "run": "r",
        "Shutdown": "ignored: not lower case",
        "shutdown": "read but never run",
        "recover": "never run",
    }
    with caplog.at_level(logging.WARNING):
        selected = select(parse_recipe(doc(lifecycle)), AMD64, LITE)
    assert sorted(selected.lifecycle.steps) == ["Install", "Run"]
    install = selected.lifecycle.steps["Install"]
    assert (install.script, install.timeout, install.skipif) == ("i", 7.0, None)
    assert selected.lifecycle.setenv == {"A": "1"}
    assert "'shutdown' phase isn't currently supported by Greengrass nucleus lite" in caplog.text
    assert "ignoring unknown lifecycle key 'Shutdown'" in caplog.text
    assert "nucleus lite does not read Skipif" in caplog.text
    classic = select(parse_recipe(doc({"Install": "i", "RUN": "r", "Shutdown": "s"})), AMD64, CLASSIC)
    assert sorted(classic.lifecycle.steps) == ["Install", "Run", "Shutdown"]


def test_lite_refuses_a_lifecycle_with_no_step_it_reads() -> None:
    recipe = parse_recipe(doc({"Install": "pip install", "Run": "python app.py"}))
    with pytest.raises(
        RecipeError, match=r"lite refuses it: .*no install, run or startup step.*lite-lifecycle-step"
    ):
        select(recipe, AMD64, LITE)
    assert sorted(select(recipe, AMD64, CLASSIC).lifecycle.steps) == ["Install", "Run"]


def test_lite_skips_manifests_without_runtime_and_fails_when_none_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recipe = parse_recipe(doc({"run": "x"}, {"os": "linux"}))
    with caplog.at_level(logging.INFO), pytest.raises(RecipeError, match="runs none of its manifests"):
        select(recipe, AMD64, LITE)
    assert "Skipping manifest as it does not include a runtime platform field." in caplog.text
    assert "No lifecycle was found for linux" in caplog.text
    assert select(recipe, AMD64, CLASSIC).lifecycle.steps["Run"].script == "x"


def test_lite_runs_startup_when_both_are_given_and_classic_refuses_it() -> None:
    recipe = parse_recipe(doc({"run": "r", "startup": "s"}))
    assert sorted(select(recipe, AMD64, LITE).lifecycle.steps) == ["Startup"]
    with pytest.raises(RecipeError, match="classic-run-and-startup"):
        select(recipe, AMD64, CLASSIC)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_lite_refuses_a_recipe_over_8196_bytes(tmp_path: Path) -> None:
    big = doc({"run": "x"}, ComponentDescription="d" * 8200)
    write(tmp_path, "big.json", json.dumps(big))
    for nucleus, refused in ((LITE, True), (CLASSIC, False)):
        recipes = load_recipes(tmp_path, nucleus)
        assert recipes["com.example.P"].size > 8196
        if refused:
            with pytest.raises(DeploymentError, match=r"8196.*lite-recipe-size"):
                plan_deployment(recipes, device=AMD64, nucleus=nucleus)
        else:
            assert [p.name for p in plan_deployment(recipes, device=AMD64, nucleus=nucleus)] == [
                "com.example.P"
            ]


def test_lite_reads_yaml_scalars_as_strings(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        "ComponentName: com.example.Y\nComponentVersion: 1.0.0\nComponentConfiguration:\n"
        "  DefaultConfiguration:\n    Interval: 5\n    Ratio: 0.5\n    Enabled: true\n    Name: cam\n"
        "Manifests:\n  - Platform: {os: linux, runtime: '*'}\n    Lifecycle:\n      run: 'true'\n",
    )
    lite = load_recipes(tmp_path, LITE)["com.example.Y"].default_configuration
    classic = load_recipes(tmp_path, CLASSIC)["com.example.Y"].default_configuration
    assert lite == {"Interval": "5", "Ratio": "0.5", "Enabled": "true", "Name": "cam"}
    assert classic == {"Interval": 5, "Ratio": 0.5, "Enabled": True, "Name": "cam"}
