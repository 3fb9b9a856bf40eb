"""The recipes build.py writes, as both Greengrass cores need them (a stand-in copy of the project built
once): platforms, lifecycle keys and steps, recipe variables, size, placeholders, version ranges and
digests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

import build
from ggrules.cores import CORES, LITE_LIFECYCLE_KEYS, LITE_RECIPE_BYTES, check_recipe, strings_in
from ggrules.variables import variables_in
from recipes.validate import PLACEHOLDER, default_configuration

from .test_build_project import PROJECT, VERSION, build_stand_in, recipes_in

Recipes = dict[str, tuple[str, dict[str, Any]]]
ZIP_ARGUMENT = re.compile(r"--zip (\S+?)=(\S+)")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_stand_in(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def recipes(out: Path) -> Recipes:
    return recipes_in(out)


def manifests(recipes: Recipes) -> list[tuple[str, dict[str, Any]]]:
    return [(name, m) for name, (_, recipe) in recipes.items() for m in recipe["Manifests"]]


def scripts(lifecycle: dict[str, Any]) -> list[str]:
    """The scripts of a lifecycle's steps (Setenv excluded)."""
    found = []
    for step, body in lifecycle.items():
        if step != "Setenv":
            found.append(body if isinstance(body, str) else body["Script"])
    return found


def test_every_recipe_has_a_manifest_for_linux_amd64_and_aarch64_with_runtime_star(recipes: Recipes) -> None:
    for name, (_, recipe) in recipes.items():
        platforms = [m["Platform"] for m in recipe["Manifests"]]
        assert platforms == [
            {"os": "linux", "architecture": "amd64", "runtime": "*"},
            {"os": "linux", "architecture": "aarch64", "runtime": "*"},
        ], name


def test_lifecycle_keys_are_the_lower_case_ones_lite_reads_and_every_component_has_a_step(
    recipes: Recipes,
) -> None:
    for name, manifest in manifests(recipes):
        lifecycle = manifest["Lifecycle"]
        assert set(lifecycle) <= set(LITE_LIFECYCLE_KEYS), name
        assert {"install", "run"} <= set(lifecycle), name  # the model component too: lite refuses none
        assert "startup" not in lifecycle, name


def test_no_recipe_uses_another_components_variables_or_a_fixed_greengrass_root(recipes: Recipes) -> None:
    for name, (text, recipe) in recipes.items():
        for where, value in strings_in(recipe, name):
            assert [v.text for v in variables_in(value) if v.component is not None] == [], where
        assert "{edgeclassifier." not in text and "{aws." not in text, name
        assert "/greengrass/v2" not in text and "/var/lib/greengrass" not in text, name


def test_configuration_reaches_scripts_only_through_setenv(recipes: Recipes) -> None:
    for name, manifest in manifests(recipes):
        lifecycle = manifest["Lifecycle"]
        for script in scripts(lifecycle):
            assert "{configuration:" not in script, name
        configuration = default_configuration(recipes[name][1])
        for variable, value in lifecycle.get("Setenv", {}).items():
            for found in variables_in(value):
                if found.namespace == "configuration":
                    assert found.key.lstrip("/") in configuration, (name, variable)


def test_the_agents_run_script_reads_each_configured_value_from_its_environment_variable(
    recipes: Recipes,
) -> None:
    _, recipe = recipes[build.AGENT]
    for manifest in recipe["Manifests"]:
        setenv, run = manifest["Lifecycle"]["Setenv"], manifest["Lifecycle"]["run"]
        configured = {k for k, v in setenv.items() if "{configuration:" in v}
        assert configured == {
            f"EDGECLASSIFIER_{key}" for key in ("SOCKET", "MODELS_ROOT", "THREADS", "CAPTURE_DIR")
        }
        assert all(f"${variable}" in run for variable in configured)


def test_every_recipe_fits_the_budget_under_lite_s_limit_as_built_and_as_gdk_publishes_it(
    recipes: Recipes,
) -> None:
    assert build.RECIPE_BUDGET == LITE_RECIPE_BYTES - 1024 == 8196 - 1024
    for name, (text, recipe) in recipes.items():
        assert len(text.encode()) <= build.RECIPE_BUDGET, name
        assert len(build.as_published(recipe).encode()) <= build.RECIPE_BUDGET, name


@pytest.mark.parametrize("core", CORES)
def test_neither_core_finds_anything_in_a_built_recipe(recipes: Recipes, core: str) -> None:
    for name, (text, recipe) in recipes.items():
        size = max(len(text.encode()), len(build.as_published(recipe).encode()))
        violations = check_recipe(recipe, size, core)
        assert [v for v in violations if v.refuses] == [], name
        assert [str(v) for v in violations] == [], name  # build.py fails on any finding


def test_every_placeholder_is_filled(recipes: Recipes) -> None:
    for name, (text, _) in recipes.items():
        assert PLACEHOLDER.findall(text) == [], name
        assert "@ARCH@" not in text and "@DIGEST@" not in text, name
    _, model = recipes[build.MODEL]
    assert [m["Platform"]["architecture"] for m in model["Manifests"]] == ["amd64", "aarch64"]


def test_dependencies_on_our_own_components_admit_this_major_version_only(recipes: Recipes) -> None:
    major = int(VERSION.split(".")[0])
    expected = f">={VERSION} <{major + 1}.0.0"
    _, inference = recipes[build.INFERENCE]
    assert inference["ComponentDependencies"] == {
        build.MODEL: {"VersionRequirement": expected, "DependencyType": "HARD"},
        build.AGENT: {"VersionRequirement": expected, "DependencyType": "SOFT"},
    }
    _, variant = recipes[build.INFERENCE_SME]
    assert variant["ComponentDependencies"][build.MODEL]["VersionRequirement"] == expected
    # An AWS component's range is the template's, untouched.
    assert variant["ComponentDependencies"]["aws.greengrass.SageMakerEdgeManager"]["VersionRequirement"] == (
        ">=1.3.0 <2.0.0"
    )


def test_a_version_range_reaches_the_next_major_from_zero_too() -> None:
    template = {"ComponentDependencies": {"x": {"VersionRequirement": "@VERSION_RANGE@"}}, "Manifests": []}
    rendered = build.render(template, build.Project(version="0.9.12", author="me"))
    assert rendered["ComponentDependencies"]["x"]["VersionRequirement"] == ">=0.9.12 <1.0.0"


def test_each_artifact_digest_is_the_base64_sha256_of_the_zip_written(out: Path, recipes: Recipes) -> None:
    for name, manifest in manifests(recipes):
        assert manifest["Artifacts"], name
        for artifact in manifest["Artifacts"]:
            data = (out / "artifacts" / name / VERSION / artifact["URI"].rsplit("/", 1)[1]).read_bytes()
            assert artifact["Digest"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
            assert artifact["Algorithm"] == "SHA-256"
            assert artifact["URI"].startswith("s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/")


def test_the_install_step_checks_each_zip_of_its_manifest_against_its_hex_sha256(
    out: Path, recipes: Recipes
) -> None:
    for name, manifest in manifests(recipes):
        script = manifest["Lifecycle"]["install"]["Script"]
        pairs = dict(ZIP_ARGUMENT.findall(script))
        files = [a["URI"].rsplit("/", 1)[1] for a in manifest["Artifacts"]]
        assert list(pairs) == files, name  # every artifact of this manifest, its own architecture's
        for file, hexdigest in pairs.items():
            data = (out / "artifacts" / name / VERSION / file).read_bytes()
            assert hexdigest == hashlib.sha256(data).hexdigest(), (name, file)
        # The step runs the first zip itself (its __main__.py is the installer), at this version.
        assert script.startswith(
            f"exec python3 -I '{{artifacts:path}}/{files[0]}' install --version {VERSION} "
        )


def test_the_model_manifest_of_each_architecture_names_its_own_neo_zip(recipes: Recipes) -> None:
    _, recipe = recipes[build.MODEL]
    for manifest in recipe["Manifests"]:
        arch = manifest["Platform"]["architecture"]
        files = [a["URI"].rsplit("/", 1)[1] for a in manifest["Artifacts"]]
        assert files == [f"{build.MODEL}.zip", f"{build.MODEL}.Neo-{arch}.zip"]
        assert f"{build.MODEL}.Neo-{arch}.zip=" in manifest["Lifecycle"]["install"]["Script"]
    amd64, aarch64 = recipe["Manifests"]
    assert amd64["Artifacts"][1]["Digest"] != aarch64["Artifacts"][1]["Digest"]
    assert amd64["Artifacts"][0]["Digest"] == aarch64["Artifacts"][0]["Digest"]


def test_a_built_recipe_is_its_template_rendered_with_the_digests_of_the_zips_written(
    out: Path, recipes: Recipes
) -> None:
    root = out.parent / "project"
    zips = {path.name: path.read_bytes() for path in (out / "artifacts").glob(f"*/{VERSION}/*.zip")}
    for name, (text, recipe) in recipes.items():
        template = build.load_template(root / "recipes" / f"{name}.json")
        assert build.fill_digests(build.render(template, PROJECT), zips) == recipe, name
        assert text == json.dumps(recipe, indent=2) + "\n"
