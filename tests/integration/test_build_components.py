"""`python build.py` on the project itself, and the zips it builds run on their own.

The real tree is built when its model and images are there; until then a copy of it with a tiny stand-in
model and images is (--project-root), so that the code, templates and pins are always the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VERSION = json.loads((ROOT / "gdk-config.json").read_text())["component"][
    "edgeclassifier.ImageClassification"
]["version"]
MODEL_DIR = ROOT / "artifacts" / "models" / "efficientnet-lite0"
IMAGES_DIR = ROOT / "artifacts" / "images"
REAL_ARTIFACTS = (MODEL_DIR / "model.onnx").is_file() and (IMAGES_DIR / "SOURCES.md").is_file()
COMPONENTS = (
    "edgeclassifier.Model.EfficientNetLite0",
    "edgeclassifier.Agent",
    "edgeclassifier.ImageClassification",
    "edgeclassifier.ImageClassification.SageMakerEdgeManager",
)


def project_root(tmp_path: Path) -> Path:
    """The real tree, or a copy of its code with stand-in artifacts while those are not in the tree yet."""
    if REAL_ARTIFACTS:
        return ROOT
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("component", "agent", "agent_client", "modelpkg", "ggrules", "recipes", "requirements"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    shutil.copy(ROOT / "gdk-config.json", copy)
    (copy / "artifacts" / "images").mkdir(parents=True)
    (copy / "artifacts" / "images" / "sample.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (copy / "artifacts" / "images" / "SOURCES.md").write_text("stand-in\n")
    model = copy / "artifacts" / "models" / "efficientnet-lite0"
    model.mkdir(parents=True)
    for name, text in {"model.onnx": "onnx", "manifest.json": "{}", "labels.txt": "tench\n"}.items():
        (model / name).write_text(text)
    return copy


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("build")
    root = project_root(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--project-root", str(root), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {tmp_path / 'out' / 'recipes' / name}-{VERSION}.json" for name in COMPONENTS
    ]
    return tmp_path / "out"


def unpack(out: Path, component: str, tmp_path: Path, file: str = "") -> Path:
    """The zip unpacked as the nucleus does: into a folder named after it."""
    zip_path = out / "artifacts" / component / VERSION / (file or f"{component}.zip")
    folder = tmp_path / "artifacts-unarchived" / component / zip_path.stem
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    return folder


def run_from(folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python with only the unpacked zip on PYTHONPATH, from an empty working folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_project_builds_four_valid_recipes_with_their_zips(out: Path) -> None:
    for name in COMPONENTS:
        recipe = json.loads((out / "recipes" / f"{name}-{VERSION}.json").read_text())
        assert recipe["ComponentName"] == name
        # The model ships a Neo zip per platform beside its ONNX zip.
        expected = 3 if name == "edgeclassifier.Model.EfficientNetLite0" else 1
        assert len(list((out / "artifacts" / name / VERSION).iterdir())) == expected


def test_the_agent_zip_runs_the_agent_on_its_own(out: Path, tmp_path: Path) -> None:
    folder = unpack(out, "edgeclassifier.Agent", tmp_path)
    imported = run_from(
        folder, tmp_path, "-c", "import agent.server, agent_client; print(agent.server.__file__)"
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(folder / "agent" / "server.py")
    assert run_from(folder, tmp_path, "-m", "agent", "--help").returncode == 0


def test_the_inference_zip_runs_the_component_on_its_own(out: Path, tmp_path: Path) -> None:
    folder = unpack(out, "edgeclassifier.ImageClassification", tmp_path)
    imported = run_from(folder, tmp_path, "-c", "import component.__main__ as m; print(m.__file__)")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(folder / "component" / "__main__.py")
    assert run_from(folder, tmp_path, "-m", "component", "--help").returncode == 0
    assert sorted(p.name for p in (folder / "images").iterdir() if p.suffix == ".jpg")
    assert (folder / "images" / "SOURCES.md").is_file()


def test_the_model_zip_unpacks_to_packages_that_pass_their_manifests(out: Path, tmp_path: Path) -> None:
    from modelpkg.manifest import load_manifest, verify_files

    folder = unpack(out, "edgeclassifier.Model.EfficientNetLite0", tmp_path)
    for package in ("efficientnet-lite0", "efficientnet-lite0-int8"):
        verify_files(load_manifest(folder / package))  # every file's digest, as the agent checks it
    recipe = json.loads(
        (out / "recipes" / f"edgeclassifier.Model.EfficientNetLite0-{VERSION}.json").read_text()
    )
    assert f"--zip {folder.name}.zip=" in recipe["Manifests"][0]["Lifecycle"]["install"]["Script"]
