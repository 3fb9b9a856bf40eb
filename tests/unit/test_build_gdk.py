"""`build.py --component NAME`, as each GDK project gdk/NAME/ runs it (`gdk component build`): that component
alone in ./greengrass-build, its recipe as recipes/NAME.json (what `gdk component publish` reads), and a
gdk-config.json that must agree with the root one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import build

from .test_build_project import PROJECT, ROOT, VERSION, read_zip, recipes_in, stand_in

AUTHOR = PROJECT.author


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in with a full build in out/, for comparison."""
    root = stand_in(tmp_path_factory.mktemp("gdk") / "project")
    build.build(root, root.parent / "out")
    return root


@pytest.mark.parametrize("name", build.COMPONENTS)
def test_each_gdk_project_builds_its_component_alone_as_gdk_publish_reads_it(
    project: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = project / "gdk" / name
    monkeypatch.chdir(here)
    assert build.main(["--project-root", str(project), "--component", name]) == 0
    out = here / "greengrass-build"
    assert capsys.readouterr().out == f"wrote {out / 'recipes' / name}.json\n"
    assert [p.name for p in (out / "recipes").iterdir()] == [f"{name}.json"]
    assert not (out / build.DEPLOYMENT).exists()
    assert [p.name for p in (out / "artifacts").iterdir()] == [name]
    # The same recipe, byte for byte, and the same zips as the full build.
    full_text, recipe = recipes_in(project.parent / "out")[name]
    assert (out / "recipes" / f"{name}.json").read_text() == full_text
    zips = sorted((out / "artifacts" / name / VERSION).iterdir())
    assert [p.name for p in zips] == sorted(
        {a["URI"].rsplit("/", 1)[1] for m in recipe["Manifests"] for a in m["Artifacts"]}
    )
    for path in zips:
        assert (
            path.read_bytes()
            == (project.parent / "out" / "artifacts" / name / VERSION / path.name).read_bytes()
        )


def test_a_second_component_build_replaces_the_first(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "greengrass-build"
    build.build(project, out, only=build.AGENT)
    build.build(project, out, only=build.MODEL)
    assert [p.name for p in (out / "recipes").iterdir()] == [f"{build.MODEL}.json"]
    assert [p.name for p in (out / "artifacts").iterdir()] == [build.MODEL]
    assert read_zip(out / "artifacts" / build.MODEL / VERSION / f"{build.MODEL}.zip")


def write_gdk_config(folder: Path, name: str, **fields: str) -> None:
    config = json.loads((ROOT / "gdk" / name / "gdk-config.json").read_text())
    config["component"][name].update(fields)
    (folder / "gdk-config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"version": "2.9.9"}, f"says version '2.9.9', author {AUTHOR!r}"),
        ({"author": "someone else"}, f"says version {VERSION!r}, author 'someone else'"),
    ],
)
def test_a_gdk_config_that_disagrees_with_the_root_is_refused_saying_set_the_same(
    project: Path,
    tmp_path: Path,
    fields: dict[str, str],
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_gdk_config(tmp_path, build.AGENT, **fields)
    monkeypatch.chdir(tmp_path)
    assert build.main(["--project-root", str(project), "--component", build.AGENT]) == 1
    error = capsys.readouterr().err
    assert f"{tmp_path / 'gdk-config.json'} {says}; " in error
    assert f"{project / 'gdk-config.json'} says {VERSION!r}, {AUTHOR!r}" in error
    assert "set the same in both" in error and "NEXT_PATCH cannot work here" in error
    assert not (tmp_path / "greengrass-build").exists()


def test_a_gdk_config_naming_another_component_is_refused(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gdk_config(tmp_path, build.AGENT)
    monkeypatch.chdir(tmp_path)
    assert build.main(["--project-root", str(project), "--component", build.MODEL]) == 1
    error = capsys.readouterr().err
    assert f"needs component.{build.MODEL}.author and .version" in error
    assert not (tmp_path / "greengrass-build").exists()


def test_a_missing_gdk_config_is_refused(project: Path, tmp_path: Path) -> None:
    with pytest.raises(build.BuildError, match=rf"{tmp_path / 'gdk-config.json'}: needs component\."):
        build.check_gdk_project(tmp_path / "gdk-config.json", project, build.AGENT)


def test_with_out_given_the_gdk_config_of_the_working_folder_is_not_consulted(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no gdk-config.json here
    argv = ["--project-root", str(project), "--component", build.AGENT, "--out", str(tmp_path / "o")]
    assert build.main(argv) == 0
    assert (tmp_path / "o" / "recipes" / f"{build.AGENT}.json").is_file()


@pytest.mark.parametrize("name", build.COMPONENTS)
def test_the_projects_gdk_folders_run_build_py_for_their_component_and_agree_with_the_root(name: str) -> None:
    folder = ROOT / "gdk" / name
    config = json.loads((folder / "gdk-config.json").read_text())
    assert list(config["component"]) == [name]
    assert config["component"][name]["build"] == {
        "build_system": "custom",
        "custom_build_command": ["python3", "../../build.py", "--component", name],
    }
    assert (folder / "../../build.py").resolve() == ROOT / "build.py"
    assert (folder / "recipe.json").resolve() == ROOT / "recipes" / f"{name}.json"
    build.check_gdk_project(folder / "gdk-config.json", ROOT, name)
