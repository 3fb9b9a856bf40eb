"""build.py applies the cores' rules (ggrules/cores.py) to every recipe before writing anything and fails
naming the component, the field and the rule; and it refuses bad templates and output folders, saying what to
do. The rules themselves are tested in test_ggrules_cores.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import build
from agent_client.errors import RecipeError
from ggrules.cores import LITE_RECIPE_BYTES

from .test_build_project import PROJECT, VERSION, stand_in

Template = dict[str, Any]


def build_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, change: Callable[[Template], None]
) -> str:
    """stderr of a build of a stand-in whose template of component `name` was changed; asserts it failed."""
    project = stand_in(tmp_path / "project")
    path = project / "recipes" / f"{name}.json"
    template = json.loads(path.read_text())
    change(template)
    path.write_text(json.dumps(template, indent=2))
    assert build.main(["--project-root", str(project), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()
    error = capsys.readouterr().err
    assert error.startswith("build.py: error: recipes a Greengrass core would refuse:\n")
    return error


def lifecycle(template: Template) -> dict[str, Any]:
    found: dict[str, Any] = template["Manifests"][0]["Lifecycle"]
    return found


def upper_case_install(template: Template) -> None:
    lifecycle(template)["Install"] = lifecycle(template).pop("install")


def no_runtime(template: Template) -> None:
    del template["Manifests"][0]["Platform"]["runtime"]


def cross_component_variable(template: Template) -> None:
    lifecycle(template)["run"] = f"exec '{{{build.AGENT}:work:path}}/venv/bin/python' -m component"


def configuration_in_script(template: Template) -> None:
    lifecycle(template)["run"] += " --log-level '{configuration:/LogLevel}'"


def fixed_root(template: Template) -> None:
    lifecycle(template)["Setenv"]["EDGECLASSIFIER_GG_ROOT"] = "/greengrass/v2"


def no_step(template: Template) -> None:
    template["Manifests"][0]["Lifecycle"] = {"Setenv": {"A": "b"}}


def run_and_startup(template: Template) -> None:
    lifecycle(template)["startup"] = "true"


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        (
            build.AGENT,
            upper_case_install,
            "Manifests[0].Lifecycle.Install: is ignored by nucleus lite, which reads only install, run, "
            "startup, shutdown, Setenv as written [lite: lite-lifecycle-keys]",
        ),
        (
            build.MODEL,
            no_runtime,
            'Manifests[0].Platform: needs "runtime": "*" (or "aws_nucleus_lite"); without it nucleus lite '
            "skips the manifest [lite: lite-platform-runtime]",
        ),
        (
            build.INFERENCE,
            cross_component_variable,
            f"Manifests[0].Lifecycle.run: {{{build.AGENT}:work:path}}: nucleus lite does not substitute "
            "another component's variables",
        ),
        (build.INFERENCE, configuration_in_script, "Manifests[0].Lifecycle.run: {configuration:/LogLevel}:"),
        (
            build.INFERENCE_SME,
            fixed_root,
            "Manifests[0].Lifecycle.Setenv.EDGECLASSIFIER_GG_ROOT: assumes the root",
        ),
        (build.MODEL, no_step, "Manifests[0].Lifecycle: has no install, run or startup step"),
        (
            build.AGENT,
            run_and_startup,
            "Manifests[0].Lifecycle: has both run and startup; only one is allowed [classic: "
            "classic-run-and-startup]",
        ),
    ],
)
def test_a_template_breaking_a_core_rule_fails_the_build_naming_component_field_and_rule(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    change: Callable[[Template], None],
    expected: str,
) -> None:
    error = build_with(tmp_path, capsys, name, change)
    lines = [line.strip() for line in error.splitlines()[1:]]
    ours = [line for line in lines if line.startswith(f"{name}: Manifests[0]")]
    assert any(expected in line for line in ours), error
    # The @ARCH@ manifest is repeated: the aarch64 one breaks the rule too; no other component is blamed.
    assert any(line.startswith(f"{name}: Manifests[1]") for line in lines), error
    assert all(line.startswith(f"{name}: ") for line in lines), error


@pytest.mark.parametrize(
    ("change", "rules"),
    [
        (cross_component_variable, ["[lite: lite-cross-component-variable]"]),
        (configuration_in_script, ["[lite: lite-configuration-in-script]"]),
        (fixed_root, ["[lite: fixed-root]", "[classic: fixed-root]"]),
    ],
)
def test_the_rule_of_each_core_that_a_template_breaks_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable[[Template], None], rules: list[str]
) -> None:
    error = build_with(tmp_path, capsys, build.INFERENCE, change)
    named = {line[line.rindex("[") :] for line in error.splitlines()[1:]}
    assert named == set(rules)


def test_a_failing_check_leaves_the_previous_build_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = stand_in(tmp_path / "project")
    out = tmp_path / "out"
    build.build(project, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    path = project / "recipes" / f"{build.AGENT}.json"
    template = json.loads(path.read_text())
    run_and_startup(template)
    path.write_text(json.dumps(template))
    assert build.main(["--project-root", str(project), "--out", str(out)]) == 1
    assert "classic-run-and-startup" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------ size


def rendered(name: str, description_bytes: int) -> dict[str, Any]:
    """The real template of `name`, rendered with stand-in digests, its description description_bytes long."""
    template = build.load_template(build.ROOT / "recipes" / f"{name}.json")
    template["ComponentDescription"] = "d" * description_bytes
    zips = {file: file.encode() for file in build.ZIPS}
    return build.fill_digests(build.render(template, PROJECT), zips)


def published_size(recipe: dict[str, Any]) -> int:
    return len(build.as_published(recipe).encode())


def test_the_budget_is_measured_on_the_recipe_as_gdk_publishes_it_to_the_byte() -> None:
    base = rendered(build.AGENT, 0)
    fits = rendered(build.AGENT, build.RECIPE_BUDGET - published_size(base))
    assert published_size(fits) == build.RECIPE_BUDGET
    text = json.dumps(fits, indent=2) + "\n"
    assert len(text.encode()) < build.RECIPE_BUDGET  # as built it is smaller: the published copy counts
    build.check_cores(build.AGENT, text)
    over = rendered(build.AGENT, build.RECIPE_BUDGET - published_size(base) + 1)
    with pytest.raises(RecipeError) as raised:
        build.check_cores(build.AGENT, json.dumps(over, indent=2) + "\n")
    assert str(raised.value).splitlines()[1:] == [
        f"  {build.AGENT}: recipe: is {build.RECIPE_BUDGET + 1} bytes (as GDK publishes it); this project "
        f"keeps recipes under {build.RECIPE_BUDGET} bytes to leave room under nucleus lite's "
        f"{LITE_RECIPE_BYTES} [lite: lite-recipe-size]"
    ]


def test_a_recipe_over_lites_limit_breaks_lites_own_rule_too() -> None:
    recipe = rendered(build.MODEL, LITE_RECIPE_BYTES)
    with pytest.raises(RecipeError) as raised:
        build.check_cores(build.MODEL, json.dumps(recipe, indent=2) + "\n")
    lines = str(raised.value).splitlines()[1:]
    assert len(lines) == 2
    assert f"nucleus lite reads at most {LITE_RECIPE_BYTES} (Insufficient memory for file)" in lines[0]
    assert all(line.endswith("[lite: lite-recipe-size]") for line in lines)


def test_an_oversize_template_fails_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pad(template: Template) -> None:
        template["ComponentDescription"] += "x" * 4000

    error = build_with(tmp_path, capsys, build.INFERENCE, pad)
    assert f"{build.INFERENCE}: recipe: is " in error
    assert f"this project keeps recipes under {build.RECIPE_BUDGET} bytes" in error
    assert error.rstrip().endswith("[lite: lite-recipe-size]")


# ------------------------------------------------------------------------------------------ templates


def test_an_artifact_build_py_cannot_build_is_refused(tmp_path: Path) -> None:
    project = stand_in(tmp_path / "project")
    path = project / "recipes" / f"{build.AGENT}.json"
    template = json.loads(path.read_text())
    template["Manifests"][0]["Artifacts"][0]["URI"] = (
        "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/x.zip"
    )
    path.write_text(json.dumps(template))
    with pytest.raises(
        build.BuildError, match=rf"{build.AGENT}: no build rule for artifact x\.zip; build.py builds"
    ):
        build.build(project, tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, "cannot be read"), ("{", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_a_template_that_is_not_a_json_object_is_refused(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "template.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(build.BuildError, match=f"recipe template {path} {expected}"):
        build.load_template(path)


def test_render_repeats_arch_manifests_per_architecture_and_keeps_others() -> None:
    template = {
        "Manifests": [
            {
                "Platform": {"os": "linux", "architecture": "@ARCH@"},
                "Lifecycle": {"run": "echo @ARCH@ @VERSION@"},
            },
            {"Platform": {"os": "linux", "architecture": "riscv64"}, "Lifecycle": {"run": "echo @ARCH@"}},
        ]
    }
    manifests = build.render(template, build.Project(version="1.2.3", author="me"))["Manifests"]
    assert [m["Lifecycle"]["run"] for m in manifests] == [
        "echo amd64 1.2.3",
        "echo aarch64 1.2.3",
        "echo @ARCH@",
    ]
    assert (
        template["Manifests"][0]["Lifecycle"]["run"] == "echo @ARCH@ @VERSION@"
    )  # the template is left alone


def test_validate_runs_on_what_the_cores_accept(tmp_path: Path) -> None:
    """A problem only recipes/validate.py knows (a DefaultConfiguration number) fails the build too."""
    project = stand_in(tmp_path / "project")
    path = project / "recipes" / f"{build.AGENT}.json"
    template = json.loads(path.read_text())
    template["ComponentConfiguration"]["DefaultConfiguration"]["Threads"] = 2
    path.write_text(json.dumps(template))
    with pytest.raises(RecipeError, match=rf"{build.AGENT}: DefaultConfiguration.Threads: store every value"):
        build.build(project, tmp_path / "out")


# ------------------------------------------------------------------------------------------ output folder


def test_clean_refuses_a_folder_holding_other_files_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "recipes").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "src").mkdir()
    with pytest.raises(build.BuildError) as raised:
        build.clean(out, tmp_path / "project")
    assert str(raised.value) == (
        f"refusing to clean {out}: it holds notes.txt, src, not only what build.py writes "
        "(recipes, artifacts, deployment.json)"
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_clean_empties_a_previous_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "recipes").mkdir(parents=True)
    (out / "recipes" / "old-1.0.0.json").write_text("{}")
    (out / "artifacts" / "old").mkdir(parents=True)
    (out / build.DEPLOYMENT).write_text("{}")
    build.clean(out, tmp_path / "project")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["artifacts", "recipes"]


def test_clean_refuses_the_project_its_parents_and_a_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for out in (project, tmp_path):
        with pytest.raises(build.BuildError, match="as the output folder: it holds the project"):
            build.clean(out, project)
    (tmp_path / "file").write_text("x")
    with pytest.raises(build.BuildError, match="as the output folder: it is a file"):
        build.clean(tmp_path / "file", project)
    assert (tmp_path / "file").read_text() == "x"


def test_the_default_output_folder_is_greengrass_build_in_the_project(tmp_path: Path) -> None:
    project = stand_in(tmp_path / "project")
    written = build.build(project)
    assert written == [
        project / "greengrass-build" / "recipes" / f"{n}-{VERSION}.json" for n in build.COMPONENTS
    ]
