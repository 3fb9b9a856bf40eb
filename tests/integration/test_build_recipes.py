"""build.py on the real tree (its real models, tens of MB): built twice, once as GDK runs it (the interpreter
with the standard library only), once in this process; the two must be byte-identical, their recipes pass
both cores, and the model zips carry the real packages, the Neo one compiled for its architecture.

tests/unit/test_build_*.py cover the same promises on a stand-in copy with tiny artifacts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import build
from ggrules.cores import CORES, check_recipe
from recipes.validate import PLACEHOLDER

pytestmark = pytest.mark.integration

ROOT = Path(build.__file__).resolve().parent
VERSION = build.read_project(ROOT / "gdk-config.json").version
MODELS = ROOT / "artifacts" / "models"
ELF_MACHINES = {"amd64": 62, "aarch64": 183}  # EM_X86_64, EM_AARCH64
NEO_SOURCES = {"amd64": "efficientnet-lite0-neo-x86_64", "aarch64": "efficientnet-lite0-neo-aarch64"}

if not (MODELS / "efficientnet-lite0" / "model.onnx").is_file():
    pytest.skip("the real models are not in the tree", allow_module_level=True)


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("real")
    result = subprocess.run(
        [sys.executable, "-S", "-E", str(ROOT / "build.py"), "--out", str(base / "gdk")],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    build.build(ROOT, base / "here")
    return base / "gdk", base / "here"


def files_of(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}


def recipes(out: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    found = {}
    for name in build.COMPONENTS:
        text = (out / "recipes" / f"{name}-{VERSION}.json").read_text(encoding="utf-8")
        found[name] = (text, json.loads(text))
    return found


def test_two_builds_of_the_real_tree_are_byte_identical(outs: tuple[Path, Path]) -> None:
    first, second = (files_of(out) for out in outs)
    assert sorted(first) == sorted(second)
    assert len(first) == len(build.COMPONENTS) + 6 + 1  # recipes, zips (model: 3), deployment.json
    assert [name for name in first if first[name].read_bytes() != second[name].read_bytes()] == []


@pytest.mark.parametrize("core", CORES)
def test_the_real_recipes_pass_both_cores_within_the_budget(outs: tuple[Path, Path], core: str) -> None:
    for name, (text, recipe) in recipes(outs[0]).items():
        size = max(len(text.encode()), len(build.as_published(recipe).encode()))
        assert size <= build.RECIPE_BUDGET, name
        assert [str(v) for v in check_recipe(recipe, size, core)] == [], name


def test_the_real_recipes_carry_the_digests_of_the_real_zips(outs: tuple[Path, Path]) -> None:
    out = outs[0]
    for name, (text, recipe) in recipes(out).items():
        assert PLACEHOLDER.findall(text) == [], name
        for manifest in recipe["Manifests"]:
            script = manifest["Lifecycle"]["install"]["Script"]
            for artifact in manifest["Artifacts"]:
                file = artifact["URI"].rsplit("/", 1)[1]
                data = (out / "artifacts" / name / VERSION / file).read_bytes()
                assert artifact["Digest"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
                assert f"--zip {file}={hashlib.sha256(data).hexdigest()}" in script


def test_the_model_zip_holds_the_real_onnx_packages_whole(outs: tuple[Path, Path]) -> None:
    path = outs[0] / "artifacts" / build.MODEL / VERSION / f"{build.MODEL}.zip"
    with zipfile.ZipFile(path) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        expected = {"__main__.py"}
        for package in ("efficientnet-lite0", "efficientnet-lite0-int8"):
            for source in (MODELS / package).iterdir():
                expected.add(f"{package}/{source.name}")
                assert archive.read(f"{package}/{source.name}") == source.read_bytes()
        assert names == expected


@pytest.mark.parametrize("arch", ["amd64", "aarch64"])
def test_each_neo_zip_holds_the_library_compiled_for_its_architecture(
    outs: tuple[Path, Path], arch: str
) -> None:
    path = outs[0] / "artifacts" / build.MODEL / VERSION / f"{build.MODEL}.Neo-{arch}.zip"
    source = MODELS / NEO_SOURCES[arch]
    with zipfile.ZipFile(path) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        assert names == {f"efficientnet-lite0-neo/{p.name}" for p in source.iterdir()}
        library = archive.read("efficientnet-lite0-neo/compiled.so")
        assert archive.read("efficientnet-lite0-neo/manifest.json") == (source / "manifest.json").read_bytes()
    assert library == (source / "compiled.so").read_bytes()
    assert library[:4] == b"\x7fELF"
    assert int.from_bytes(library[18:20], "little") == ELF_MACHINES[arch]
