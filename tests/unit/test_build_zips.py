"""The zips build.py writes: deterministic (sorted entries, fixed date and modes, no caches or hidden files),
safe names, symlinks inside the project only, the installer as `__main__.py`, and each zip's layout."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

import build

from .test_build_project import IMAGES, NEO_FILES, ROOT, VERSION, build_stand_in, read_zip, stand_in

ZipFiles = dict[str, Path]  # zip file name -> the one written (the variant's copy aside)


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> ZipFiles:
    _, out = build_stand_in(tmp_path_factory)
    return {path.name: path for path in sorted((out / "artifacts").glob(f"*/{VERSION}/*.zip"))}


def entries(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def tops(path: Path) -> set[str]:
    return {info.filename.split("/")[0] for info in entries(path)}


def test_every_zip_is_built(zips: ZipFiles) -> None:
    assert sorted(zips) == sorted(build.ZIPS)


def test_entries_are_sorted_dated_1980_with_unix_modes_and_a_folder_entry_each(zips: ZipFiles) -> None:
    for name, path in zips.items():
        infos = entries(path)
        names = [info.filename for info in infos]
        assert names == sorted(names, key=lambda entry: entry.rstrip("/").split("/")), name
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.create_system == 3, info.filename
            mode = info.external_attr >> 16
            if info.is_dir():
                assert mode == stat.S_IFDIR | 0o755, info.filename
            else:
                assert mode == stat.S_IFREG | 0o644, info.filename
                assert info.compress_type == zipfile.ZIP_DEFLATED
        folders = {n for n in names if n.endswith("/")}
        for entry in names:
            parts = entry.rstrip("/").split("/")
            assert {"/".join(parts[:i]) + "/" for i in range(1, len(parts))} <= folders, entry


def test_no_zip_holds_caches_hidden_files_or_unsafe_names(zips: ZipFiles) -> None:
    for path in zips.values():
        for entry in read_zip(path):
            build.check_entry_name(entry.rstrip("/"))
            parts = entry.rstrip("/").split("/")
            assert not any(p.startswith(".") or p == "__pycache__" for p in parts), entry
            assert not entry.endswith((".pyc", ".pyo")), entry


def test_each_zip_with_python_and_the_model_zip_run_the_installer_as_main(zips: ZipFiles) -> None:
    installer = (ROOT / "recipes" / "installer.py").read_bytes()
    for name, path in zips.items():
        files = read_zip(path)
        if ".Neo-" in name:
            assert "__main__.py" not in files, name
            assert not any(entry.endswith(".py") for entry in files), name
        else:
            assert files["__main__.py"] == installer, name


def test_the_inference_zip_holds_its_packages_images_and_pins(zips: ZipFiles) -> None:
    path = zips[f"{build.INFERENCE}.zip"]
    assert tops(path) == {
        "component",
        "ggrules",
        "agent_client",
        "modelpkg",
        "images",
        "requirements.txt",
        "__main__.py",
    }
    files = read_zip(path)
    assert files["requirements.txt"] == (ROOT / "requirements" / "component.txt").read_bytes()
    assert sorted(n for n in files if n.startswith("images/") and not n.endswith("/")) == sorted(
        [*(f"images/{image}" for image in IMAGES), "images/SOURCES.md"]
    )
    for package in ("component", "ggrules", "agent_client", "modelpkg"):
        sources = {
            f"{package}/{p.relative_to(ROOT / package).as_posix()}"
            for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert sources and sources <= set(files), package
        assert files[f"{package}/__init__.py"] == (ROOT / package / "__init__.py").read_bytes()


def test_the_agent_zip_holds_its_packages_and_pins(zips: ZipFiles) -> None:
    path = zips[f"{build.AGENT}.zip"]
    assert tops(path) == {"agent", "agent_client", "modelpkg", "requirements.txt", "__main__.py"}
    files = read_zip(path)
    assert files["requirements.txt"] == (ROOT / "requirements" / "agent.txt").read_bytes()
    assert files["agent/server.py"] == (ROOT / "agent" / "server.py").read_bytes()


def test_the_model_zip_holds_the_fp32_and_int8_packages(zips: ZipFiles) -> None:
    files = read_zip(zips[f"{build.MODEL}.zip"])
    expected = {"__main__.py"}
    for package in ("efficientnet-lite0", "efficientnet-lite0-int8"):
        expected |= {
            f"{package}/",
            *(f"{package}/{n}" for n in ("model.onnx", "manifest.json", "labels.txt")),
        }
        assert files[f"{package}/model.onnx"] == f"{package}/model.onnx\n".encode()
    assert set(files) == expected


@pytest.mark.parametrize(("arch", "folder"), [("amd64", "x86_64"), ("aarch64", "aarch64")])
def test_each_neo_zip_holds_the_folder_compiled_for_its_architecture(
    zips: ZipFiles, arch: str, folder: str
) -> None:
    files = read_zip(zips[f"{build.MODEL}.Neo-{arch}.zip"])
    names = (*NEO_FILES, "manifest.json", "labels.txt")
    assert set(files) == {"efficientnet-lite0-neo/", *(f"efficientnet-lite0-neo/{n}" for n in names)}
    for name in names:
        assert files[f"efficientnet-lite0-neo/{name}"] == f"efficientnet-lite0-neo-{folder}/{name}\n".encode()


def test_two_builds_of_the_same_sources_elsewhere_at_other_times_are_byte_identical(tmp_path: Path) -> None:
    first = stand_in(tmp_path / "a" / "project")
    second = tmp_path / "b" / "elsewhere"
    shutil.copytree(first, second, symlinks=True)
    for path in second.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_700_000_000, 1_700_000_000))
    (second / "component" / "__pycache__").mkdir(exist_ok=True)
    (second / "component" / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"cache")
    (second / "component" / ".app.py.swp").write_bytes(b"editor")
    (second / "agent" / "stale.pyc").write_bytes(b"cache")
    build.build(first, tmp_path / "a" / "out")
    build.build(second, tmp_path / "b" / "out")

    def contents(out: Path) -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b = contents(tmp_path / "a" / "out"), contents(tmp_path / "b" / "out")
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []


# ------------------------------------------------------------------------------------------ zip_bytes, tree


def test_zip_bytes_adds_folder_entries_and_sorts_by_path_parts(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_text("x")
    data = build.zip_bytes([("b/c.txt", source), ("a-b.txt", source), ("a/z.txt", source)])
    path = tmp_path / "out.zip"
    path.write_bytes(data)
    # Sorted by parts: "a" < "a-b.txt" < "b", whereas a plain sort puts "a-b.txt" before "a/".
    assert [i.filename for i in entries(path)] == ["a/", "a/z.txt", "a-b.txt", "b/", "b/c.txt"]
    assert build.zip_bytes([("a/z.txt", source), ("b/c.txt", source), ("a-b.txt", source)]) == data


def test_the_same_entry_name_from_two_sources_is_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("1")
    two.write_text("2")
    with pytest.raises(build.BuildError, match=r"zip entry x/y would come from both .*one and .*two"):
        build.zip_bytes([("x/y", one), ("x/y", two)])


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "", "a\\b", "C:/x", "a/.."]
)
def test_unsafe_entry_names_are_refused(name: str) -> None:
    with pytest.raises(build.BuildError, match="unsafe zip entry name"):
        build.check_entry_name(name)


@pytest.mark.parametrize("name", ["__main__.py", "a/b/c.py", "efficientnet-lite0-neo/compiled.so", "x..y"])
def test_safe_entry_names_pass(name: str) -> None:
    build.check_entry_name(name)


def test_tree_skips_caches_and_hidden_files_and_follows_symlinks_inside_the_project(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / ".hidden").mkdir()
    (root / "pkg" / "a.py").write_text("a")
    (root / "pkg" / "sub" / "b.py").write_text("b")
    (root / "pkg" / "a.pyc").write_text("cache")
    (root / "pkg" / "__pycache__" / "a.cpython-312.pyc").write_text("cache")
    (root / "pkg" / ".hidden" / "c.py").write_text("hidden")
    (root / "pkg" / ".env").write_text("secret")
    (root / "shared.txt").write_text("shared")
    (root / "pkg" / "link.txt").symlink_to(root / "shared.txt")
    files = dict(build.tree(root, root / "pkg", "pkg"))
    assert sorted(files) == ["pkg/a.py", "pkg/link.txt", "pkg/sub/b.py"]
    assert files["pkg/link.txt"] == (root / "shared.txt").resolve()  # packaged as the file it points to


def test_a_symlink_leaving_the_project_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("not ours")
    (root / "pkg" / "leak.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(build.BuildError, match=r"leak\.txt is a symlink leaving the project .*refusing"):
        build.tree(root, root / "pkg", "pkg")


def test_a_symlinked_folder_and_a_dangling_symlink_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "pkg" / "folder").symlink_to(root / "real", target_is_directory=True)
    with pytest.raises(build.BuildError, match="is a symlinked folder; replace it with a real one"):
        build.tree(root, root / "pkg", "pkg")
    (root / "pkg" / "folder").unlink()
    (root / "pkg" / "gone.txt").symlink_to(root / "missing.txt")
    with pytest.raises(build.BuildError, match=r"gone\.txt is missing or not a regular file"):
        build.tree(root, root / "pkg", "pkg")


def test_a_symlink_out_of_a_copied_project_fails_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = stand_in(tmp_path / "project")
    (tmp_path / "secret").write_text("not ours")
    (project / "agent" / "secret.py").symlink_to(tmp_path / "secret")
    assert build.main(["--project-root", str(project), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert f"{project / 'agent' / 'secret.py'} is a symlink leaving the project" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("artifacts/models/efficientnet-lite0-neo-aarch64/compiled.so", "compiled.so is missing"),
        ("artifacts/models/efficientnet-lite0-int8/labels.txt", "labels.txt is missing"),
        ("artifacts/images/SOURCES.md", "SOURCES.md is missing"),
        ("requirements/agent.txt", "agent.txt is missing"),
        ("modelpkg/__init__.py", "is not a Python package"),
    ],
)
def test_a_missing_source_fails_the_build_naming_it(tmp_path: Path, path: str, expected: str) -> None:
    project = stand_in(tmp_path / "project")
    (project / path).unlink()
    with pytest.raises(build.BuildError, match=expected):
        build.build(project, tmp_path / "out")


def test_an_inference_build_without_sample_images_is_refused(tmp_path: Path) -> None:
    project = stand_in(tmp_path / "project")
    for image in IMAGES:
        (project / "artifacts" / "images" / image).unlink()
    with pytest.raises(
        build.BuildError, match=r"no \*\.jpg in .*the inference component ships sample images"
    ):
        build.build(project, tmp_path / "out")
