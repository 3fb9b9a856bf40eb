"""build.py and recipes/: the four components' recipes and zips, determinism, and validation errors.

Builds a small copy of the project (the real gdk-config.json, recipes/ and requirements/, tiny stand-ins for
the Python packages, images and model) with --project-root, so these tests run in a second or two.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agent_client.errors import RecipeError
from recipes.validate import digest, validate

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("edgeclassifier_build", ROOT / "build.py")
assert _spec and _spec.loader
build = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

INFERENCE, INFERENCE_SME, MODEL, AGENT = build.INFERENCE, build.INFERENCE_SME, build.MODEL, build.AGENT
RESULT_TOPIC = "gg/sageMakerEdgeManager/image-classification"
STATUS_TOPIC = "edgeclassifier/status/+"
NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
INFERENCE_DEFAULTS = {
    "Source": "",
    "ImageDirectory": "",
    "ImageName": "",
    "InferenceInterval": "5",
    "PublishResultsOnTopic": RESULT_TOPIC,
    "ModelPath": "",
    "ModelName": "",
    "AgentSocket": "/tmp/aws.greengrass.SageMakerEdgeManager.sock",
    "TopK": "5",
    "ScoreThreshold": "0.3",
    "RpcTimeoutSeconds": "5",
    "MaxFrames": "0",
    "BatchSize": "1",
    "ErroredAfterSeconds": "120",
    "LogLevel": "INFO",
    "StatusTopic": "",
    "StatusInterval": "30",
    "CaptureSampleRate": "0",
    "CaptureBudgetPerHour": "60",
}


def make_project(root: Path) -> Path:
    """A buildable project: real config, templates and pins; tiny packages, images and model."""
    root.mkdir(parents=True)
    shutil.copy(ROOT / "gdk-config.json", root)
    shutil.copytree(ROOT / "recipes", root / "recipes", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "requirements", root / "requirements")
    files = {
        "component/__init__.py": "",
        "component/__main__.py": "print('component')\n",
        "component/__pycache__/app.cpython-311.pyc": "cache",
        "component/stale.pyc": "cache",
        "component/.orig.swp": "editor",
        "agent/__init__.py": "",
        "agent/__main__.py": "print('agent')\n",
        "agent/backends/__init__.py": "",
        "agent_client/__init__.py": "",
        "agent_client/agent.proto": 'syntax = "proto3";\n',
        "modelpkg/__init__.py": "",
        "artifacts/images/cat.jpg": "jpeg-cat",
        "artifacts/images/dog.jpg": "jpeg-dog",
        "artifacts/images/notes.txt": "not an image",
        "artifacts/images/SOURCES.md": "# Image sources\n",
        "artifacts/models/efficientnet-lite0/model.onnx": "onnx-bytes",
        "artifacts/models/efficientnet-lite0/manifest.json": '{"name": "efficientnet-lite0"}\n',
        "artifacts/models/efficientnet-lite0/labels.txt": "tench\ngoldfish\n",
        "artifacts/models/efficientnet-lite0-int8/model.onnx": "int8-bytes",
        "artifacts/models/efficientnet-lite0-int8/manifest.json": '{"name": "efficientnet-lite0-int8"}\n',
        "artifacts/models/efficientnet-lite0-int8/labels.txt": "tench\ngoldfish\n",
        **{
            f"artifacts/models/efficientnet-lite0-neo-{target}/{file}": f"{target} {file}"
            for target in ("x86_64", "aarch64")
            for file in (*NEO_FILES, "manifest.json", "labels.txt")
        },
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def out(project: Path, tmp_path: Path) -> Path:
    build.build(project, tmp_path / "out")
    return tmp_path / "out"


def recipe(out: Path, name: str, version: str = "1.0.0") -> dict[str, Any]:
    return json.loads((out / "recipes" / f"{name}-{version}.json").read_text())


def zip_of(out: Path, name: str, file: str, version: str = "1.0.0") -> zipfile.ZipFile:
    return zipfile.ZipFile(out / "artifacts" / name / version / file)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def edit_template(project: Path, name: str, change: Any) -> None:
    path = project / "recipes" / f"{name}.json"
    template = json.loads(path.read_text())
    change(template)
    path.write_text(json.dumps(template))


def build_error(project: Path, out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert build.main(["--project-root", str(project), "--out", str(out), *args]) == 1
    return capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- output


def test_two_builds_are_byte_identical_whatever_the_file_dates_and_modes(
    project: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    for path in copy.rglob("*"):
        if path.is_file():
            path.chmod(0o600)
            os.utime(path, (1_700_000_000, 1_700_000_000))
    build.build(project, tmp_path / "a")
    build.build(copy, tmp_path / "b")
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert first == second
    assert len(first) == 10
    assert all(data.endswith(b"}\n") for name, data in first.items() if name.endswith(".json"))


def test_writes_a_recipe_per_component_and_its_zip_under_name_and_version(out: Path) -> None:
    assert set(snapshot(out)) == {
        f"artifacts/{AGENT}/1.0.0/{AGENT}.zip",
        f"artifacts/{INFERENCE}/1.0.0/{INFERENCE}.zip",
        f"artifacts/{INFERENCE_SME}/1.0.0/{INFERENCE}.zip",
        f"artifacts/{MODEL}/1.0.0/{MODEL}.zip",
        f"artifacts/{MODEL}/1.0.0/{MODEL}.Neo-amd64.zip",
        f"artifacts/{MODEL}/1.0.0/{MODEL}.Neo-aarch64.zip",
        f"recipes/{AGENT}-1.0.0.json",
        f"recipes/{INFERENCE}-1.0.0.json",
        f"recipes/{INFERENCE_SME}-1.0.0.json",
        f"recipes/{MODEL}-1.0.0.json",
    }
    for name in build.COMPONENTS:
        assert recipe(out, name)["ComponentName"] == name
        assert recipe(out, name)["ComponentVersion"] == "1.0.0"
        assert recipe(out, name)["ComponentPublisher"] == "edgeclassifier contributors"


def test_version_flag_overrides_gdk_config_everywhere(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert build.main(["--project-root", str(project), "--out", str(out), "--version", "2.3.4"]) == 0
    inference = recipe(out, INFERENCE, "2.3.4")
    assert {d["VersionRequirement"] for d in inference["ComponentDependencies"].values()} == {
        ">=2.3.4 <3.0.0"
    }
    model_path = recipe(out, MODEL, "2.3.4")["ComponentConfiguration"]["DefaultConfiguration"]["ModelPath"]
    assert f"/{MODEL}/2.3.4/{MODEL}/efficientnet-lite0" in model_path
    assert (out / "artifacts" / AGENT / "2.3.4" / f"{AGENT}.zip").is_file()


@pytest.mark.parametrize("version", ["NEXT_PATCH", "1.0", "v1.0.0", "01.0.0"])
def test_a_version_that_is_not_concrete_semver_is_refused(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    err = build_error(project, tmp_path / "out", capsys, "--version", version)
    assert f"version {version!r} is not a concrete semantic version x.y.z" in err
    assert not (tmp_path / "out").exists()


def test_recipe_digests_are_the_base64_sha256_of_the_zips_beside_them(out: Path) -> None:
    for name in build.COMPONENTS:
        for manifest in recipe(out, name)["Manifests"]:
            for artifact in manifest["Artifacts"]:
                file = artifact["URI"].removeprefix("s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/")
                assert "/" not in file
                assert artifact["Digest"] == digest((out / "artifacts" / name / "1.0.0" / file).read_bytes())
                assert (artifact["Algorithm"], artifact["Unarchive"]) == ("SHA-256", "ZIP")


def test_every_recipe_targets_linux_amd64_and_aarch64_with_one_lifecycle(out: Path) -> None:
    for name in build.COMPONENTS:
        manifests = recipe(out, name)["Manifests"]
        assert [m["Platform"] for m in manifests] == [
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "aarch64"},
        ]
        lifecycles = [
            json.dumps(m["Lifecycle"]).replace(m["Platform"]["architecture"], "ARCH") for m in manifests
        ]
        assert lifecycles[0] == lifecycles[1]  # the same, but for the platform's own Neo package
        if name != MODEL:
            assert manifests[0]["Artifacts"] == manifests[1]["Artifacts"]


def test_the_model_selects_the_neo_package_of_each_platform_beside_the_common_onnx_one(out: Path) -> None:
    for manifest in recipe(out, MODEL)["Manifests"]:
        arch = manifest["Platform"]["architecture"]
        files = [a["URI"].rsplit("/", 1)[1] for a in manifest["Artifacts"]]
        assert files == [f"{MODEL}.zip", f"{MODEL}.Neo-{arch}.zip"]


# ---------------------------------------------------------------------------------------------- recipes


def test_inference_may_only_publish_results_and_status_to_iot_core(out: Path) -> None:
    for name in (INFERENCE, INFERENCE_SME):
        access = recipe(out, name)["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
        assert list(access) == ["aws.greengrass.ipc.mqttproxy"]
        (policy,) = access["aws.greengrass.ipc.mqttproxy"].values()
        assert policy["operations"] == ["aws.greengrass#PublishToIoTCore"]
        assert policy["resources"] == [RESULT_TOPIC, STATUS_TOPIC]
    for name in (MODEL, AGENT):
        assert "accessControl" not in recipe(out, name)["ComponentConfiguration"]["DefaultConfiguration"]


def test_inference_defaults_are_the_documented_keys_as_strings(out: Path) -> None:
    config = dict(recipe(out, INFERENCE)["ComponentConfiguration"]["DefaultConfiguration"])
    config.pop("accessControl")
    assert config == INFERENCE_DEFAULTS


def test_inference_defaults_pass_the_components_own_configuration_check(out: Path) -> None:
    from component.config import build_config

    defaults = recipe(out, INFERENCE)["ComponentConfiguration"]["DefaultConfiguration"]
    config = build_config({"model_path": Path("/m"), "image_directory": Path("/i")}, defaults)
    assert (config.topic, config.top_k, config.score_threshold, config.max_frames) == (
        RESULT_TOPIC,
        5,
        0.3,
        0,
    )
    assert (config.model_path, config.image_directory) == (Path("/m"), Path("/i"))


def test_the_edge_manager_variant_differs_only_in_name_dependency_policy_id_and_neo_model(out: Path) -> None:
    ours, variant = recipe(out, INFERENCE), recipe(out, INFERENCE_SME)
    assert variant["ComponentDependencies"] == {
        MODEL: {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": "HARD"},
        "aws.greengrass.SageMakerEdgeManager": {
            "VersionRequirement": ">=1.3.0 <2.0.0",
            "DependencyType": "HARD",
        },
    }
    # AWS's agent runs Neo-compiled models only: the variant loads the platform's Neo package
    for mine, theirs in zip(ours["Manifests"], variant["Manifests"], strict=True):
        arch = mine["Platform"]["architecture"]
        run = mine["Lifecycle"]["Run"].replace(
            f"{MODEL}/efficientnet-lite0'", f"{MODEL}.Neo-{arch}/efficientnet-lite0-neo'"
        )
        assert run != mine["Lifecycle"]["Run"]
        assert theirs == {**mine, "Lifecycle": {**mine["Lifecycle"], "Run": run}}
    policies = [r["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"] for r in (ours, variant)]
    assert [list(p["aws.greengrass.ipc.mqttproxy"]) for p in policies] == [
        [f"{INFERENCE}:mqttproxy:1"],
        [f"{INFERENCE_SME}:mqttproxy:1"],
    ]
    same = {
        "ComponentDependencies",
        "ComponentName",
        "ComponentDescription",
        "ComponentConfiguration",
        "Manifests",
    }
    assert {k: v for k, v in ours.items() if k not in same} == {
        k: v for k, v in variant.items() if k not in same
    }
    first, second = ([*p["aws.greengrass.ipc.mqttproxy"].values()] for p in policies)
    assert first == second
    configs = [r["ComponentConfiguration"]["DefaultConfiguration"] for r in (ours, variant)]
    assert [{k: v for k, v in c.items() if k != "accessControl"} for c in configs] == [INFERENCE_DEFAULTS] * 2


def test_inference_depends_hard_on_the_model_and_agent_of_the_same_major(out: Path) -> None:
    assert recipe(out, INFERENCE)["ComponentDependencies"] == {
        MODEL: {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": "HARD"},
        AGENT: {"VersionRequirement": ">=1.0.0 <2.0.0", "DependencyType": "HARD"},
    }
    assert "ComponentDependencies" not in recipe(out, MODEL)
    assert "ComponentDependencies" not in recipe(out, AGENT)


@pytest.mark.parametrize(
    ("name", "folder"), [(INFERENCE, INFERENCE), (INFERENCE_SME, INFERENCE), (AGENT, AGENT)]
)
def test_install_builds_the_venv_once_as_the_component_user(out: Path, name: str, folder: str) -> None:
    lifecycle = recipe(out, name)["Manifests"][0]["Lifecycle"]
    install = lifecycle["Install"]
    assert set(install) == {"Script", "Timeout"} and install["Timeout"] >= 900
    script = install["Script"]
    assert script.startswith(
        f"requirements='{{artifacts:decompressedPath}}/{folder}/requirements.txt'\nvenv='{{work:path}}/venv'\n"
    )
    assert 'want=$(sha256sum "$requirements"' in script and '"$venv/.requirements.sha256"' in script
    assert "python3 -m venv" in script and "--only-binary=:all:" in script
    assert not [line for line in script.splitlines() if line.lstrip().startswith("#")]
    assert lifecycle["Setenv"] == {
        "PYTHONPATH": f"{{artifacts:decompressedPath}}/{folder}",
        "PYTHONUNBUFFERED": "1",
    }
    assert "RequiresPrivilege" not in json.dumps(lifecycle)
    assert "Shutdown" not in lifecycle and "Startup" not in lifecycle


def test_inference_runs_the_component_on_the_model_and_bundled_images(out: Path) -> None:
    run = recipe(out, INFERENCE)["Manifests"][0]["Lifecycle"]["Run"]
    assert run == (
        "exec '{work:path}/venv/bin/python' -m component"
        f" --model-path '{{{MODEL}:artifacts:decompressedPath}}/{MODEL}/efficientnet-lite0'"
        f" --image-directory '{{artifacts:decompressedPath}}/{INFERENCE}/images'"
    )


def test_agent_runs_with_its_configuration_and_documented_fallbacks(out: Path) -> None:
    agent = recipe(out, AGENT)
    assert agent["ComponentConfiguration"]["DefaultConfiguration"] == {
        "UnixSocketName": "/tmp/aws.greengrass.SageMakerEdgeManager.sock",
        "ModelsRoot": "",
        "Threads": "2",
        "CaptureDataDiskPath": "",
    }
    run = agent["Manifests"][0]["Lifecycle"]["Run"]
    assert "models_root='{kernel:rootPath}/packages/artifacts-unarchived'" in run
    assert "capture_dir='{work:path}/capture'" in run
    assert run.splitlines()[-1] == (
        "exec '{work:path}/venv/bin/python' -m agent --socket '{configuration:/UnixSocketName}'"
        ' --models-root "$models_root" --threads \'{configuration:/Threads}\' --capture-dir "$capture_dir"'
    )


def test_model_is_readable_by_every_user_and_runs_nothing(out: Path) -> None:
    model = recipe(out, MODEL)
    for manifest in model["Manifests"]:
        assert manifest["Lifecycle"] == {}
        assert [a["Permission"] for a in manifest["Artifacts"]] == [{"Read": "ALL", "Execute": "NONE"}] * 2
    for name in (AGENT, INFERENCE):
        assert recipe(out, name)["Manifests"][0]["Artifacts"][0]["Permission"] == {
            "Read": "OWNER",
            "Execute": "NONE",
        }
    unarchived = f"/greengrass/v2/packages/artifacts-unarchived/{MODEL}/1.0.0"
    assert model["ComponentConfiguration"]["DefaultConfiguration"] == {
        "ModelPath": f"{unarchived}/{MODEL}/efficientnet-lite0",
        "Int8ModelPath": f"{unarchived}/{MODEL}/efficientnet-lite0-int8",
        "NeoModelPathAmd64": f"{unarchived}/{MODEL}.Neo-amd64/efficientnet-lite0-neo",
        "NeoModelPathAarch64": f"{unarchived}/{MODEL}.Neo-aarch64/efficientnet-lite0-neo",
    }


# ---------------------------------------------------------------------------------------------- zips


def test_inference_zip_holds_the_packages_images_and_pins(out: Path, project: Path) -> None:
    with zip_of(out, INFERENCE, f"{INFERENCE}.zip") as archive:
        names = archive.namelist()
        assert {n.split("/")[0] for n in names} == {
            "component",
            "agent_client",
            "modelpkg",
            "images",
            "requirements.txt",
        }
        assert [n for n in names if n.startswith("images/")] == [
            "images/",
            "images/SOURCES.md",
            "images/cat.jpg",
            "images/dog.jpg",
        ]
        assert "component/__main__.py" in names and "agent_client/agent.proto" in names
        assert archive.read("requirements.txt") == (project / "requirements" / "component.txt").read_bytes()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/." in n]


def test_agent_zip_holds_the_agent_its_client_and_pins(out: Path, project: Path) -> None:
    with zip_of(out, AGENT, f"{AGENT}.zip") as archive:
        names = archive.namelist()
        assert {n.split("/")[0] for n in names} == {"agent", "agent_client", "modelpkg", "requirements.txt"}
        assert "agent/backends/__init__.py" in names
        assert archive.read("requirements.txt") == (project / "requirements" / "agent.txt").read_bytes()


def test_model_zip_unpacks_to_the_model_folder(out: Path) -> None:
    with zip_of(out, MODEL, f"{MODEL}.zip") as archive:
        assert archive.namelist() == [
            "efficientnet-lite0/",
            "efficientnet-lite0/labels.txt",
            "efficientnet-lite0/manifest.json",
            "efficientnet-lite0/model.onnx",
            "efficientnet-lite0-int8/",
            "efficientnet-lite0-int8/labels.txt",
            "efficientnet-lite0-int8/manifest.json",
            "efficientnet-lite0-int8/model.onnx",
        ]
        assert json.loads(archive.read("efficientnet-lite0/manifest.json")) == {"name": "efficientnet-lite0"}


@pytest.mark.parametrize(("arch", "target"), [("amd64", "x86_64"), ("aarch64", "aarch64")])
def test_each_neo_zip_unpacks_the_folder_compiled_for_its_platform(out: Path, arch: str, target: str) -> None:
    with zip_of(out, MODEL, f"{MODEL}.Neo-{arch}.zip") as archive:
        names = sorted((*NEO_FILES, "labels.txt", "manifest.json"))
        assert archive.namelist() == [
            "efficientnet-lite0-neo/",
            *(f"efficientnet-lite0-neo/{n}" for n in names),
        ]
        assert archive.read("efficientnet-lite0-neo/compiled.so") == f"{target} compiled.so".encode()


def test_zip_entries_are_sorted_dated_1980_with_fixed_modes(out: Path) -> None:
    zips = [(INFERENCE, f"{INFERENCE}.zip"), (AGENT, f"{AGENT}.zip"), (MODEL, f"{MODEL}.zip")]
    for name, file in [*zips, (MODEL, f"{MODEL}.Neo-amd64.zip"), (MODEL, f"{MODEL}.Neo-aarch64.zip")]:
        with zip_of(out, name, file) as archive:
            infos = archive.infolist()
            assert [i.filename.rstrip("/").split("/") for i in infos] == sorted(
                i.filename.rstrip("/").split("/") for i in infos
            )
            for info in infos:
                assert info.date_time == (1980, 1, 1, 0, 0, 0)
                assert info.external_attr >> 16 == (0o40755 if info.is_dir() else 0o100644)
                assert not info.filename.startswith("/") and ".." not in info.filename.split("/")


@pytest.mark.parametrize(
    "name", ["../evil.py", "/etc/passwd", "a/../../b", "a\\b", "a//b", "", "./a", "c:/x"]
)
def test_unsafe_zip_entry_names_are_refused(name: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_text("x")
    with pytest.raises(build.BuildError, match="unsafe zip entry name"):
        build.zip_bytes([(name, source)])


def test_a_symlink_leaving_the_project_is_refused(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (project / "agent" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    err = build_error(project, tmp_path / "out", capsys)
    assert "agent/leak.txt is a symlink leaving the project" in err and "refusing to package it" in err


def test_a_symlink_inside_the_project_is_packaged_as_the_file(project: Path, tmp_path: Path) -> None:
    (project / "artifacts" / "images" / "bird.jpg").symlink_to(project / "artifacts" / "images" / "cat.jpg")
    build.build(project, tmp_path / "out")
    with zip_of(tmp_path / "out", INFERENCE, f"{INFERENCE}.zip") as archive:
        assert archive.read("images/bird.jpg") == b"jpeg-cat"
        assert archive.getinfo("images/bird.jpg").external_attr >> 16 == 0o100644


# ---------------------------------------------------------------------------------------------- errors


def test_an_unknown_recipe_variable_fails_with_a_clear_message(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def change(template: dict[str, Any]) -> None:
        template["Manifests"][0]["Lifecycle"]["Run"] += " --log-dir {logs:path}"

    edit_template(project, AGENT, change)
    err = build_error(project, tmp_path / "out", capsys)
    assert err.startswith("build.py: error: invalid recipes:\n")
    assert f"{AGENT}: Manifests[0].Lifecycle.Run: unknown recipe variable {{logs:path}}; " in err
    assert "namespaces: artifacts, work, configuration, kernel, iot" in err
    assert f"{AGENT}: Manifests[1].Lifecycle.Run" in err  # every manifest is reported
    assert not list((tmp_path / "out" / "recipes").iterdir())


@pytest.mark.parametrize(
    ("addition", "message"),
    [
        (f"{{{MODEL}:work:path}}", f"names {MODEL}, which is not a dependency of this component"),
        ("{configuration:/Missing}", "{configuration:/Missing}: no such key in the DefaultConfiguration"),
        ("{artifacts:root}", "{artifacts:root}: artifacts has only decompressedPath, path"),
        ("{kernel:rootPath:x}", "names kernel, which is not a dependency"),
        ("${HOME:-/root}", "unknown recipe variable {HOME:-/root}"),
        (
            "{artifacts:decompressedPath}/agent/x",
            "no ZIP artifact unpacks to agent/ (ZIP folders: edgeclassifier",
        ),
    ],
)
def test_lifecycle_variables_are_checked_against_the_recipe(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], addition: str, message: str
) -> None:
    def change(template: dict[str, Any]) -> None:
        template["Manifests"][0]["Lifecycle"]["Run"] += " " + addition

    edit_template(project, AGENT, change)
    err = build_error(project, tmp_path / "out", capsys)
    assert message in err


def test_configuration_values_holding_recipe_variables_are_refused(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def change(template: dict[str, Any]) -> None:
        config = template["ComponentConfiguration"]["DefaultConfiguration"]
        config["accessControl"]["aws.greengrass.ipc.mqttproxy"][f"{INFERENCE}:mqttproxy:1"]["resources"][
            1
        ] = "edgeclassifier/status/{iot:thingName}"
        config["TopK"] = 5

    edit_template(project, INFERENCE, change)
    err = build_error(project, tmp_path / "out", capsys)
    assert f"{INFERENCE}: DefaultConfiguration.TopK: store every value as a string" in err
    policy = f"DefaultConfiguration.accessControl.aws.greengrass.ipc.mqttproxy.{INFERENCE}:mqttproxy:1"
    assert (
        f"{INFERENCE}: {policy}.resources: 'edgeclassifier/status/{{iot:thingName}}': recipe variables in "
        "configuration are interpolated only by nucleus >= 2.6 with interpolateComponentConfiguration; "
        "use an MQTT wildcard"
    ) in err


def test_a_missing_model_file_fails_with_a_clear_message(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "artifacts" / "models" / "efficientnet-lite0" / "model.onnx").unlink()
    err = build_error(project, tmp_path / "out", capsys)
    model = project / "artifacts" / "models" / "efficientnet-lite0" / "model.onnx"
    assert err == f"build.py: error: {model} is missing or not a regular file\n"


def test_missing_sources_and_templates_are_named(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "artifacts" / "images" / "SOURCES.md").unlink()
    assert "artifacts/images/SOURCES.md is missing" in build_error(project, tmp_path / "out", capsys)
    (project / "recipes" / f"{AGENT}.json").write_text("{")
    assert f"recipe template {project}/recipes/{AGENT}.json is not valid JSON" in build_error(
        project, tmp_path / "out", capsys
    )
    (project / "recipes" / f"{AGENT}.json").unlink()
    assert "cannot be read" in build_error(project, tmp_path / "out", capsys)


def test_validate_reports_a_missing_artifact_and_a_wrong_digest(out: Path) -> None:
    recipes = {name: recipe(out, name) for name in build.COMPONENTS}
    recipes[AGENT]["Manifests"][1]["Artifacts"][0]["Digest"] = digest(b"something else")
    (out / "artifacts" / MODEL / "1.0.0" / f"{MODEL}.zip").unlink()
    with pytest.raises(RecipeError) as caught:
        validate(recipes, out / "artifacts")
    message = str(caught.value)
    folder = out / "artifacts" / MODEL / "1.0.0"
    assert f"{MODEL}: Manifests[0].Artifacts[0]: artifact {MODEL}.zip is missing from {folder}" in message
    assert f"{AGENT}: Manifests[1].Artifacts[0].Digest: does not match" in message
    assert f"{AGENT}: Manifests[0].Artifacts[0].Digest" not in message


def test_validate_checks_names_versions_keys_and_access_control_shape(out: Path) -> None:
    recipes = {name: recipe(out, name) for name in build.COMPONENTS}
    recipes[INFERENCE_SME]["ComponentVersion"] = "1.0"
    inference = recipes[INFERENCE]
    inference["Lifecycles"] = {}
    inference["ComponentDependencies"][AGENT]["VersionRequirement"] = ">=2.0.0 <3.0.0"
    access = inference["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    access["aws.greengrass.ipc.mqttproxy"][f"{INFERENCE}:mqttproxy:1"]["operations"] = ["PublishToIoTCore"]
    access["aws.greengrass.ipc.pubsub"] = {
        f"{INFERENCE_SME}:mqttproxy:1": {"operations": ["*"], "resources": []}
    }
    recipes[MODEL]["Manifests"][0]["Artifacts"][0]["Permission"] = {"Read": "ALL"}
    recipes[MODEL]["Manifests"] = recipes[MODEL]["Manifests"][:1]
    with pytest.raises(RecipeError) as caught:
        validate(recipes, out / "artifacts")
    message = str(caught.value)
    assert f"{INFERENCE_SME}: ComponentVersion: '1.0' is not a semantic version" in message
    assert f"{INFERENCE}: Lifecycles: unknown recipe key" in message
    assert f"{INFERENCE}: ComponentDependencies.{AGENT}: '>=2.0.0 <3.0.0' excludes {AGENT} 1.0.0" in message
    assert "operations: 'PublishToIoTCore' is not aws.greengrass#<Operation>" in message
    assert (
        f"aws.greengrass.ipc.pubsub.{INFERENCE_SME}:mqttproxy:1.resources: must be a non-empty list"
        in message
    )
    assert f"accessControl: policy id {INFERENCE_SME}:mqttproxy:1 is also used by {INFERENCE}" in message
    assert f"{MODEL}: Manifests[0].Artifacts[0].Permission: set Read and Execute deliberately" in message
    assert f"{MODEL}: Manifests: no manifest for linux aarch64" in message


def test_validate_refuses_privileged_steps_and_bad_step_shapes(out: Path) -> None:
    recipes = {name: recipe(out, name) for name in build.COMPONENTS}
    lifecycle = recipes[AGENT]["Manifests"][0]["Lifecycle"]
    lifecycle["Install"]["RequiresPrivilege"] = True
    lifecycle["Startup"] = {"Script": "true", "Timeout": "60"}
    lifecycle["Launch"] = "true"
    with pytest.raises(RecipeError) as caught:
        validate(recipes, out / "artifacts")
    message = str(caught.value)
    assert "Lifecycle.Install.RequiresPrivilege: the components run as the component user" in message
    assert "Lifecycle: has both Run and Startup" in message
    assert "Lifecycle.Startup.Timeout: must be a positive number of seconds" in message
    assert "Lifecycle.Launch: unknown step" in message


# ---------------------------------------------------------------------------------------------- output folder


def test_the_output_folder_is_cleaned_first(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "greengrass-build"
    (out / "artifacts" / INFERENCE / "0.9.0").mkdir(parents=True)
    (out / "artifacts" / INFERENCE / "0.9.0" / "stale.zip").write_text("old")
    (out / "recipes").mkdir()
    (out / "recipes" / "stale.json").write_text("{}")
    build.build(project, out)
    assert not (out / "recipes" / "stale.json").exists()
    assert not (out / "artifacts" / INFERENCE / "0.9.0").exists()


def test_the_default_output_is_greengrass_build_in_the_project(project: Path) -> None:
    written = build.build(project)
    assert written[0].parent == project / "greengrass-build" / "recipes"


@pytest.mark.parametrize("where", ["foreign", "project", "parent"])
def test_an_output_folder_that_is_not_a_build_folder_is_left_alone(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    out = {"foreign": tmp_path / "home", "project": project, "parent": tmp_path}[where]
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    err = build_error(project, out, capsys)
    assert "refusing to" in err
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"
    assert (project / "gdk-config.json").is_file()


# ---------------------------------------------------------------------------------------------- gdk-config


def test_gdk_config_follows_the_gdk_schema_with_a_custom_build_and_concrete_version() -> None:
    config = json.loads((ROOT / "gdk-config.json").read_text())
    assert set(config) == {"component", "gdk_version"}
    assert config["gdk_version"] == "1.6.2"
    assert list(config["component"]) == [INFERENCE]
    component = config["component"][INFERENCE]
    assert set(component) == {"author", "version", "build", "publish"}
    assert isinstance(component["author"], str) and component["author"]
    assert re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", component["version"])
    assert component["build"] == {"build_system": "custom", "custom_build_command": ["python3", "build.py"]}
    assert set(component["publish"]) == {"bucket", "region"} and component["publish"]["bucket"]
    assert component["publish"]["region"] in {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-central-1",
        "eu-west-1",
    }


# ---------------------------------------------------------------------------------------------- requirements


def pins(name: str) -> list[tuple[str, str, str]]:
    """(name, version, marker) of requirements/<name>.txt; fails on anything but name==version[; marker]."""
    found = []
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(
                r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)"
                r"(?:; (python_version [<>]=? \"3\.\d+\"|platform_machine == \"(?:x86_64|aarch64)\"))?",
                line,
            )
            assert match, f"{name}: {line!r} is not an exact pin"
            found.append((match[1].lower(), match[2], match[3] or ""))
    return found


COMPONENT_NEEDS = {
    "numpy",
    "pillow",
    "grpcio",
    "protobuf",
    "awsiotsdk",
    "awscrt",
    "pydantic",
    "pydantic-core",
}
COMPONENT_NEEDS |= {"annotated-types", "typing-extensions", "typing-inspection"}
AGENT_NEEDS = {
    "numpy",
    "grpcio",
    "grpcio-health-checking",
    "protobuf",
    "onnxruntime",
    "flatbuffers",
    "packaging",
}


@pytest.mark.parametrize(
    ("name", "needed", "absent"),
    [
        ("component.txt", COMPONENT_NEEDS, {"onnxruntime", "grpcio-health-checking"}),
        ("agent.txt", AGENT_NEEDS | {"typing-extensions", "dlr"}, {"pillow", "awsiotsdk", "pydantic"}),
    ],
)
def test_device_requirements_are_exact_pins_of_what_the_tests_run_with(
    name: str, needed: set[str], absent: set[str]
) -> None:
    from importlib.metadata import PackageNotFoundError, version

    found = pins(name)
    names = {n for n, _, _ in found}
    assert needed <= names and not absent & names and "torch" not in names
    for package, pinned, marker in found:
        if marker.startswith("python_version <"):
            continue  # pins for Python 3.10 only, which these tests do not run on
        try:
            assert version(package) == pinned, (
                f"{name}: {package}=={pinned} but the tests run {version(package)}"
            )
        except PackageNotFoundError:
            pytest.fail(f"{name}: {package} is pinned but not installed where the tests run")
