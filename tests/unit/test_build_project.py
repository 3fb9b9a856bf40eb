"""build.py's output as a whole, on a stand-in copy of the project (its real code, templates, pins and GDK
projects, tiny model and image files): the file names, the deployment document and the command line.

The helpers here (`stand_in`, `build_stand_in`, `read_zip`, `recipes_in`) serve the other test_build_*
modules too; tests/integration/test_build_recipes.py builds the real tree.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

import build

ROOT = Path(build.__file__).resolve().parent
PROJECT = build.read_project(ROOT / "gdk-config.json")
VERSION = PROJECT.version
CODE = ("component", "agent", "agent_client", "modelpkg", "ggrules", "recipes", "requirements")
NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
STAND_IN_MODELS = {
    "efficientnet-lite0": ("model.onnx",),
    "efficientnet-lite0-int8": ("model.onnx",),
    "efficientnet-lite0-neo-x86_64": NEO_FILES,
    "efficientnet-lite0-neo-aarch64": NEO_FILES,
}
IMAGES = ("chelsea.jpg", "coffee.jpg")


def stand_in(dest: Path) -> Path:
    """A copy of the project at dest with tiny artifacts; each model file holds its own path, so that a test
    can tell which folder a zip entry came from."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in CODE:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copytree(ROOT / "gdk", dest / "gdk", symlinks=True)
    shutil.copy(ROOT / "gdk-config.json", dest)
    images = dest / "artifacts" / "images"
    images.mkdir(parents=True)
    for name in IMAGES:
        (images / name).write_bytes(b"\xff\xd8" + name.encode() + b"\xff\xd9")
    (images / "SOURCES.md").write_text("stand-in images\n")
    for folder, files in STAND_IN_MODELS.items():
        path = dest / "artifacts" / "models" / folder
        path.mkdir(parents=True)
        for name in (*files, "manifest.json", "labels.txt"):
            (path / name).write_text(f"{folder}/{name}\n")
    return dest


def build_stand_in(factory: pytest.TempPathFactory, **options: Any) -> tuple[Path, Path]:
    """(project, out): a fresh stand-in built by build.build(project, out, **options)."""
    base = factory.mktemp("build")
    project = stand_in(base / "project")
    build.build(project, base / "out", **options)
    return project, base / "out"


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def recipes_in(out: Path, version: str = VERSION) -> dict[str, tuple[str, dict[str, Any]]]:
    """Component name -> (recipe text, recipe) of a full build."""
    found = {}
    for name in build.COMPONENTS:
        text = (out / "recipes" / f"{name}-{version}.json").read_text(encoding="utf-8")
        found[name] = (text, json.loads(text))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_stand_in(tmp_path_factory)


def test_the_build_writes_a_recipe_per_component_named_as_nucleus_lite_requires(
    built: tuple[Path, Path],
) -> None:
    _, out = built
    assert sorted(p.name for p in out.iterdir()) == ["artifacts", build.DEPLOYMENT, "recipes"]
    assert sorted(p.name for p in (out / "recipes").iterdir()) == sorted(
        f"{name}-{VERSION}.json" for name in build.COMPONENTS
    )
    for name, (_, recipe) in recipes_in(out).items():
        assert (recipe["ComponentName"], recipe["ComponentVersion"]) == (name, VERSION)
        assert recipe["ComponentPublisher"] == PROJECT.author


def test_each_component_folder_holds_exactly_the_zips_its_recipe_names(built: tuple[Path, Path]) -> None:
    _, out = built
    assert sorted(p.name for p in (out / "artifacts").iterdir()) == sorted(build.COMPONENTS)
    for name, (_, recipe) in recipes_in(out).items():
        named = {uri.rsplit("/", 1)[1] for uri in _uris(recipe)}
        assert sorted(p.name for p in (out / "artifacts" / name / VERSION).iterdir()) == sorted(named)
    model = out / "artifacts" / build.MODEL / VERSION
    assert sorted(p.name for p in model.iterdir()) == [
        f"{build.MODEL}.Neo-aarch64.zip",
        f"{build.MODEL}.Neo-amd64.zip",
        f"{build.MODEL}.zip",
    ]
    # The variant ships the very zip of the inference component.
    inference = out / "artifacts" / build.INFERENCE / VERSION / f"{build.INFERENCE}.zip"
    variant = out / "artifacts" / build.INFERENCE_SME / VERSION / f"{build.INFERENCE}.zip"
    assert variant.read_bytes() == inference.read_bytes()


def _uris(recipe: dict[str, Any]) -> list[str]:
    return [a["URI"] for m in recipe["Manifests"] for a in m.get("Artifacts", [])]


# Top-level keys and value shapes of `aws greengrassv2 create-deployment --cli-input-json`.
DEPLOYMENT_KEYS = {
    "targetArn",
    "deploymentName",
    "components",
    "iotJobConfiguration",
    "deploymentPolicies",
    "parentTargetArn",
    "tags",
    "clientToken",
}


def test_the_deployment_document_deploys_the_built_versions_to_the_thing_group(
    built: tuple[Path, Path],
) -> None:
    _, out = built
    document = json.loads((out / build.DEPLOYMENT).read_text())
    assert set(document) <= DEPLOYMENT_KEYS
    assert document["targetArn"] == build.THING_GROUP_ARN
    assert isinstance(document["deploymentName"], str) and VERSION in document["deploymentName"]
    components = document["components"]
    assert set(components) == {build.INFERENCE, build.AGENT, build.MODEL}
    assert all(spec == {"componentVersion": VERSION} for spec in components.values())
    # Every edgeclassifier dependency of a deployed component is deployed with it.
    recipes = recipes_in(out)
    for name in components:
        ours = {
            d for d in recipes[name][1].get("ComponentDependencies", {}) if d.startswith("edgeclassifier.")
        }
        assert ours <= set(components), name
    policies = document["deploymentPolicies"]
    assert policies["failureHandlingPolicy"] in ("ROLLBACK", "DO_NOTHING")
    assert policies["componentUpdatePolicy"]["action"] in ("NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS")
    assert isinstance(policies["componentUpdatePolicy"]["timeoutInSeconds"], int)
    assert isinstance(policies["configurationValidationPolicy"]["timeoutInSeconds"], int)


def test_the_command_line_builds_with_another_version_and_thing_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, out = stand_in(tmp_path / "project"), tmp_path / "out"
    arn = "arn:aws:iot:eu-west-1:123456789012:thinggroup/cameras"
    argv = [
        "--project-root",
        str(project),
        "--out",
        str(out),
        "--version",
        "3.1.4-rc.1",
        "--thing-group-arn",
        arn,
    ]
    assert build.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {out / 'recipes' / name}-3.1.4-rc.1.json" for name in build.COMPONENTS
    ]
    document = json.loads((out / build.DEPLOYMENT).read_text())
    assert document["targetArn"] == arn
    assert {spec["componentVersion"] for spec in document["components"].values()} == {"3.1.4-rc.1"}
    for name, (_, recipe) in recipes_in(out, "3.1.4-rc.1").items():
        assert recipe["ComponentVersion"] == "3.1.4-rc.1"
        for dependency, spec in recipe.get("ComponentDependencies", {}).items():
            if dependency.startswith("edgeclassifier."):
                assert spec["VersionRequirement"] == ">=3.1.4-rc.1 <4.0.0"
        assert (out / "artifacts" / name / "3.1.4-rc.1").is_dir()
        for manifest in recipe["Manifests"]:
            assert " install --version 3.1.4-rc.1 " in manifest["Lifecycle"]["install"]["Script"]


@pytest.mark.parametrize("version", ["2.0", "NEXT_PATCH", "v2.0.0", "2.0.0.1", "02.0.0", "1" * 63 + ".0.0"])
def test_a_version_that_is_not_semver_is_refused_before_anything_is_written(
    version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, out = stand_in(tmp_path / "project"), tmp_path / "out"
    assert build.main(["--project-root", str(project), "--out", str(out), "--version", version]) == 1
    error = capsys.readouterr().err
    assert error.startswith("build.py: error: ")
    assert f"version {version!r} is not a concrete semantic version" in error
    assert "--version" in error
    assert not out.exists()


def test_an_unknown_component_is_refused_naming_the_components(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, out = stand_in(tmp_path / "project"), tmp_path / "out"
    argv = ["--project-root", str(project), "--out", str(out), "--component", "edgeclassifier.Nope"]
    assert build.main(argv) == 1
    error = capsys.readouterr().err
    assert "unknown component 'edgeclassifier.Nope'" in error
    assert all(name in error for name in build.COMPONENTS)
    assert not out.exists()


def test_a_gdk_config_without_author_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gdk-config.json"
    config.write_text(json.dumps({"component": {build.INFERENCE: {"author": " ", "version": "1.0.0"}}}))
    with pytest.raises(build.BuildError, match="author must be a non-empty string"):
        build.read_project(config)
    config.write_text(json.dumps({"component": {build.AGENT: {"author": "a", "version": "1.0.0"}}}))
    with pytest.raises(build.BuildError, match=rf"needs component\.{build.INFERENCE}\.author and \.version"):
        build.read_project(config)
