"""The console commands pyproject.toml declares resolve to the modules' main functions and run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

COMMANDS = {
    "edgeclassifier-agent": "agent.__main__:main",
    "edgeclassifier-component": "component.__main__:main",
    "gglocal": "gglocal.cli:main",
}


def test_each_console_command_points_at_its_main() -> None:
    declared = {e.name: e.value for e in entry_points(group="console_scripts") if e.name in COMMANDS}
    assert declared == COMMANDS
    for entry in entry_points(group="console_scripts"):
        if entry.name in COMMANDS:
            assert callable(entry.load())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_console_command_answers_help(command: str) -> None:
    path = shutil.which(command) or shutil.which(command, path=f"{sys.prefix}/bin")
    assert path, f"{command} is not installed: scripts/setup installs the project with its commands"
    done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout
