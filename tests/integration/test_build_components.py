"""`python build.py` on the project itself, and the zips it builds run on their own.

The real tree is built (its code, templates, pins, models and images); tests/unit/test_build_*.py build a
copy with stand-in artifacts.
"""

from __future__ import annotations

import json
import os
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
COMPONENTS = (
    "edgeclassifier.Model.EfficientNetLite0",
    "edgeclassifier.Agent",
    "edgeclassifier.ImageClassification",
    "edgeclassifier.ImageClassification.SageMakerEdgeManager",
)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("build")
    result = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--project-root", str(ROOT), "--out", str(tmp_path / "out")],
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
