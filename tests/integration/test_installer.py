"""recipes/installer.py with the real `python -m venv` and pip, offline; the built zip run as recipes run it.

pip sees only a folder of wheels made here (PIP_NO_INDEX, PIP_FIND_LINKS, as the end-to-end tests point it
at .wheelhouse; PIP_CONFIG_FILE=/dev/null so that no machine's pip.conf adds an index or constraints).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from recipes import installer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "edgeclassifier.Demo.zip"


def load_build() -> ModuleType:
    """build.py by its path (a `build` package installed in the venv would shadow `import build`)."""
    spec = importlib.util.spec_from_file_location("edgeclassifier_build_for_installer", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_wheel(folder: Path, version: str) -> Path:
    """tinypkg-<version>-py3-none-any.whl, pure Python, with a valid RECORD: pip installs it offline."""
    dist = f"tinypkg-{version}.dist-info"
    files = {
        "tinypkg/__init__.py": f"VALUE = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: tinypkg\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"tinypkg-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "1.0")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def ship(tmp_path: Path, artifacts: Path, pins: str, word: str) -> str:
    """The component's zip as build.py makes it (installer.py as __main__.py); returns its SHA-256."""
    build = load_build()
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    (sources / "requirements.txt").write_text(pins)
    (sources / "hello.py").write_text(f"WORD = {word!r}\n")
    files = [*build.installer(ROOT), ("hello.py", sources / "hello.py")]
    files.append(("requirements.txt", sources / "requirements.txt"))
    data = build.zip_bytes(files)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / NAME).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def arguments(tmp_path: Path, version: str, digest: str) -> list[str]:
    """The install step's arguments as the recipe templates give them (lite: nothing unarchived)."""
    gg = tmp_path / "gg"
    (gg / "unpacked").mkdir(parents=True, exist_ok=True)
    return [
        "install",
        "--version",
        version,
        "--work",
        str(gg / "work"),
        "--artifacts",
        str(gg / "artifacts" / version),
        "--unpacked",
        str(gg / "unpacked"),
        "--zip",
        f"{NAME}={digest}",
        "--link",
        "app",
        "--requirements",
    ]


def run_app(work: Path) -> str:
    """What the run step would see: the venv's python, PYTHONPATH the link."""
    code = "import sys, hello, tinypkg; print(sys.prefix, hello.WORD, tinypkg.VALUE)"
    env = {**os.environ, "PYTHONPATH": str(work / "app")}
    done = subprocess.run(
        [str(work / "venv" / "bin" / "python"), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_built_zip_installs_itself_and_keeps_its_virtualenv(tmp_path: Path, wheels: Path) -> None:
    gg = tmp_path / "gg"
    (gg / "work").mkdir(parents=True)
    digest = ship(tmp_path, gg / "artifacts" / "1.0.0", "tinypkg==1.0\n", "one")
    command = [sys.executable, "-I", str(gg / "artifacts" / "1.0.0" / NAME)]
    first = subprocess.run(
        [*command, *arguments(tmp_path, "1.0.0", digest)], capture_output=True, text=True, timeout=240
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "unpacking" in first.stdout and f"virtualenv {gg / 'work' / 'venv'} is ready" in first.stdout
    assert run_app(gg / "work") == f"{gg / 'work' / 'venv'} one 1.0"
    # compiled at install by the venv's Python, beside the code: a start does not compile it again
    compiled = gg / "work" / "app" / "__pycache__" / f"hello.{sys.implementation.cache_tag}.pyc"
    assert compiled.is_file()
    stamp = gg / "work" / "venv" / installer.STAMP
    before = stamp.stat().st_mtime_ns

    for wheel in wheels.iterdir():  # pip run again would find nothing and fail
        wheel.unlink()
    digest = ship(tmp_path, gg / "artifacts" / "1.0.1", "tinypkg==1.0\n", "two")
    command[-1] = str(gg / "artifacts" / "1.0.1" / NAME)
    second = subprocess.run(
        [*command, *arguments(tmp_path, "1.0.1", digest)], capture_output=True, text=True, timeout=240
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"virtualenv {gg / 'work' / 'venv'} is up to date" in second.stdout
    assert stamp.stat().st_mtime_ns == before
    assert run_app(gg / "work") == f"{gg / 'work' / 'venv'} two 1.0"
    assert sorted(p.name for p in (gg / "work" / "unpacked").iterdir()) == ["1.0.0", "1.0.1"]

    wrong = subprocess.run(
        [*command, *arguments(tmp_path, "1.0.1", "0" * 64)], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 1
    assert "the recipe says 0000" in wrong.stderr and "redeploy the component" in wrong.stderr


def test_a_failed_pip_keeps_the_old_virtualenv_and_a_later_one_replaces_it(
    tmp_path: Path, wheels: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "gg" / "work"
    work.mkdir(parents=True)
    digest = ship(tmp_path, tmp_path / "gg" / "artifacts" / "1.0.0", "tinypkg==1.0\n", "one")
    assert installer.main(arguments(tmp_path, "1.0.0", digest)) == 0
    assert run_app(work) == f"{work / 'venv'} one 1.0"
    capfd.readouterr()

    digest = ship(tmp_path, tmp_path / "gg" / "artifacts" / "1.0.1", "tinypkg==2.0\n", "two")
    assert installer.main(arguments(tmp_path, "1.0.1", digest)) == 1
    err = capfd.readouterr().err
    assert "pip could not install" in err and "the previous virtualenv is kept" in err
    assert run_app(work) == f"{work / 'venv'} one 1.0"  # the old code with its old venv, whole
    assert not (work / "venv.new").exists()

    make_wheel(wheels, "2.0")
    assert installer.main(arguments(tmp_path, "1.0.1", digest)) == 0
    assert run_app(work) == f"{work / 'venv'} two 2.0"  # the venv renamed from venv.new still runs
    recorded = json.loads((work / "venv" / installer.STAMP).read_text())
    assert recorded["requirements"] == installer.sha256_of(work / "app" / "requirements.txt")
    assert not (work / "venv.new").exists() and not (work / "venv.old").exists()
