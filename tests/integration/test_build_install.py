"""The recipes' Install step, run as the nucleus would: a venv built once, again only when the pins change.

Runs the agent recipe's Install script with sh, the recipe variables resolved to temp folders, a
requirements.txt without requirements (so pip needs no network), and `python3` on the PATH being a wrapper
that logs every call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("edgeclassifier_build", ROOT / "build.py")
assert _spec and _spec.loader
build = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

pytestmark = pytest.mark.integration


class Device:
    """A component's folders as the nucleus lays them out, and its Install script with variables resolved."""

    def __init__(self, tmp_path: Path) -> None:
        project = build.Project(version="1.0.0", author="tests")
        template = build.load_template(ROOT / "recipes" / f"{build.AGENT}.json")
        recipe = build.render(template, project, build.install_script(ROOT))
        unarchived, self.work = tmp_path / "artifacts-unarchived", tmp_path / "work"
        self.requirements = unarchived / build.AGENT / "requirements.txt"
        self.requirements.parent.mkdir(parents=True)
        self.work.mkdir()
        script = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
        self.script = script.replace("{artifacts:decompressedPath}", str(unarchived)).replace(
            "{work:path}", str(self.work)
        )
        self.bin, self.calls = tmp_path / "bin", tmp_path / "python3-calls.log"
        self.bin.mkdir()
        self.use_python(f'echo "$*" >> {self.calls}\nexec {sys.executable} "$@"')

    def use_python(self, body: str) -> None:
        (self.bin / "python3").write_text(f"#!/bin/sh\n{body}\n")
        (self.bin / "python3").chmod(0o755)

    def install(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}
        return subprocess.run(
            ["sh", "-c", self.script], cwd=self.work, env=env, capture_output=True, text=True, timeout=300
        )

    def python3_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    @property
    def marker(self) -> Path:
        return self.work / "venv" / ".requirements.sha256"


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_install_creates_the_venv_once_and_again_only_when_the_pins_change(device: Device) -> None:
    device.requirements.write_text("# no requirements\n")
    first = device.install()
    assert first.returncode == 0, first.stderr
    assert (device.work / "venv" / "bin" / "python").exists()
    assert device.marker.read_text().strip() == hashlib.sha256(device.requirements.read_bytes()).hexdigest()
    assert any(call.startswith("-m venv ") for call in device.python3_calls())

    device.calls.unlink()
    again = device.install()
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout
    assert device.python3_calls() == []  # no venv, no pip: a restart costs nothing

    device.requirements.write_text("# no requirements, new pins\n")
    changed = device.install()
    assert changed.returncode == 0, changed.stderr
    assert any(call.startswith("-m venv ") for call in device.python3_calls())
    assert device.marker.read_text().strip() == hashlib.sha256(device.requirements.read_bytes()).hexdigest()


def test_a_failed_pip_leaves_no_marker_so_the_next_start_retries(device: Device) -> None:
    device.requirements.write_text("./no-such-project\n")
    failed = device.install()
    assert failed.returncode != 0
    assert not device.marker.exists()

    device.requirements.write_text("# fixed\n")
    device.calls.unlink()
    retried = device.install()
    assert retried.returncode == 0, retried.stderr
    assert any(call.startswith("-m venv ") for call in device.python3_calls())
    assert device.marker.exists()


def test_an_unsupported_python_is_named_before_anything_is_created(device: Device) -> None:
    device.requirements.write_text("# no requirements\n")
    device.use_python('[ "$1" = -V ] && echo "Python 3.9.2" && exit 0\nexit 1')
    result = device.install()
    assert result.returncode == 1
    assert "edgeclassifier needs python3 3.10, 3.11 or 3.12 on the PATH; found: Python 3.9.2" in result.stderr
    assert not (device.work / "venv").exists()
