"""What the stand-in keeps on disk is owner-only whatever the umask: outbox (result payloads), logs, state
file, data folder, and the IPC and control sockets (0600 from the bind itself, checked with strace)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gglocal.outbox import Outbox
from gglocal.private import PrivateFileHandler, write_private_text
from tests.gglocal_builds import write_component

if TYPE_CHECKING:
    from tests.mqtt_broker import Mosquitto

pytest_plugins = ["tests.gglocal_fixtures"]
pytestmark = pytest.mark.integration

TIMEOUT = 30.0
QUIET = "print('hello'); import time; time.sleep(120)"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_build(build: Path) -> None:
    write_component(build, "com.example.Quiet", {"Run": f'{sys.executable} -u -c "{QUIET}"'})


def wait_for_text(path: Path, text: str, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_a_stand_in_started_with_umask_000_keeps_everything_owner_only(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    build, root = tmp_path / "build", tmp_path / "root"
    write_build(build)
    command = [sys.executable, "-m", "gglocal", "deploy", str(build), "--root", str(root)]
    command += ["--mqtt", mosquitto.address]
    process = subprocess.Popen(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_text(root / "logs" / "com.example.Quiet.log", "hello")
        state = json.loads((root / "gglocal.json").read_text())
        private = {
            root / "data": 0o700,
            root / "logs": 0o700,
            root / "data" / "outbox.sqlite": 0o600,
            root / "data" / "outbox.sqlite-wal": 0o600,
            root / "data" / "outbox.sqlite-shm": 0o600,
            root / "logs" / "greengrass.log": 0o600,
            root / "logs" / "com.example.Quiet.log": 0o600,
            root / "gglocal.json": 0o600,
            Path(state["ipc_socket"]): 0o600,
            Path(state["control_socket"]): 0o600,
        }
        assert {str(path): oct(mode(path)) for path in private} == {
            str(path): oct(bits) for path, bits in private.items()
        }
        stop = subprocess.run(
            [sys.executable, "-m", "gglocal", "stop", "--root", str(root)], timeout=TIMEOUT, check=False
        )
        assert stop.returncode == 0
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def test_files_that_already_exist_with_wider_modes_are_narrowed(tmp_path: Path) -> None:
    for name in ("outbox.sqlite", "gglocal.json", "greengrass.log"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)
    Outbox(tmp_path / "outbox.sqlite").close()
    write_private_text(tmp_path / "gglocal.json", "{}\n")
    handler = PrivateFileHandler(tmp_path / "greengrass.log")
    handler.close()
    names = ("outbox.sqlite", "gglocal.json", "greengrass.log")
    assert {name: oct(mode(tmp_path / name)) for name in names} == dict.fromkeys(names, "0o600")


BIND_BOTH = """
import sys
from pathlib import Path
from gglocal.control import ControlServer
from gglocal.server import IpcServer
folder = Path(sys.argv[1])
ipc = IpcServer(folder / "ipc.sock")
ipc.start()
control = ControlServer(folder / "gglocal.ctl", {})
control.start()
control.stop()
ipc.stop()
"""


def test_sockets_are_bound_under_an_owner_only_umask_and_never_chmodded(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: run scripts/test, or apt-get install -y strace")
    folder = Path(tempfile.mkdtemp(prefix="gg", dir="/tmp"))
    try:
        trace = tmp_path / "trace.txt"
        traced = ["-f", "-o", str(trace), "-e", "trace=umask,bind,chmod,fchmod,fchmodat"]
        subprocess.run(
            [strace, *traced, sys.executable, "-c", BIND_BOTH, str(folder)],
            check=True,
            timeout=TIMEOUT,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        calls = [line.split(None, 1)[1] for line in trace.read_text().splitlines() if "(" in line]
        binds = [i for i, call in enumerate(calls) if call.startswith("bind(") and str(folder) in call]
        assert len(binds) == 2, calls
        for index in binds:
            assert calls[index - 1].startswith("umask(0177)"), calls[index - 1 : index + 1]
            restore = calls[index + 1]  # e.g. "umask(022) = 0177": the previous umask is back
            assert restore.startswith("umask(") and restore.split("=")[-1].strip() == "0177", restore
        assert not [call for call in calls if "chmod" in call and str(folder) in call]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
