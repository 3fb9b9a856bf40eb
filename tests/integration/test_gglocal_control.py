"""The control socket of a running stand-in against malformed, huge, slow and silent clients: none of them
ends it or holds the others up; status, config and stop keep working after each."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gglocal import ComponentState, Core, RestartPolicy
from gglocal.control import MAX_REQUEST, read_state_file, send_command
from tests.gglocal_builds import write_component

pytestmark = pytest.mark.integration

TIMEOUT = 20.0


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    build = tmp_path / "build"
    write_component(build, "com.example.Idle", {"Run": "sleep 60"}, configuration={"Message": "default"})
    core = Core(tmp_path / "root", restart_policy=RestartPolicy(grace_s=1.0))
    core.deploy(build)
    assert core.wait_for_state("com.example.Idle", {ComponentState.RUNNING}, TIMEOUT)
    yield core
    core.stop()


def control_path(core: Core) -> str:
    return str(read_state_file(core.root)["control_socket"])


def raw_request(core: Core, data: bytes) -> bytes:
    """Send ``data`` (sending may be cut short by the server); everything the server answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(control_path(core))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        reply = b""
        try:
            while chunk := conn.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        return reply


def still_serves(core: Core) -> None:
    status = send_command(core.root, {"cmd": "status"})
    assert status["components"]["com.example.Idle"]["state"] == "RUNNING"
    changed = send_command(
        core.root, {"cmd": "config", "component": "com.example.Idle", "merge": {"Message": time.time()}}
    )
    assert changed["changed"] == ["/Message"]


BAD_INPUTS = {
    "100 KB nested JSON": b"[" * 100_000 + b"\n",
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"\n",
    "invalid UTF-8": b'{"cmd": "\xff\xfe"}\n',
    "not an object": b"[1, 2, 3]\n",
    "not JSON": b"status please\n",
    "unknown command": b'{"cmd": "reboot"}\n',
    "config with a bad merge": b'{"cmd": "config", "component": "com.example.Idle", "merge": [1]}\n',
    "config of nothing": b'{"cmd": "config"}\n',
    "config, cloud not a boolean": b'{"cmd": "config", "component": "com.example.Idle", "cloud": "yes"}\n',
}


def test_malformed_requests_are_answered_and_status_config_stop_keep_working(core: Core) -> None:
    # before: the 100 KB nested JSON raised RecursionError in the control thread: later commands timed out
    for what, data in BAD_INPUTS.items():
        reply = json.loads(raw_request(core, data))
        assert reply["ok"] is False and reply["error"], what
        still_serves(core)
    huge = raw_request(core, b"x" * (4 * MAX_REQUEST))  # no newline, larger than a request may be
    assert not huge or f"more than {MAX_REQUEST} bytes".encode() in huge
    still_serves(core)
    assert send_command(core.root, {"cmd": "stop"}) == {"ok": True}
    assert core.stop_requested.is_set()


def test_silent_and_slow_clients_do_not_hold_up_a_status_request(core: Core) -> None:
    # before: one connection at a time, 10 s each: a silent client held every command up for 10 s
    path = control_path(core)
    silent = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
    for conn in silent:
        conn.connect(path)
    dribbler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dribbler.connect(path)
    stop = threading.Event()

    def dribble() -> None:
        for byte in b'{"cmd": "status"':
            if stop.wait(0.2):
                return
            try:
                dribbler.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        still_serves(core)
        assert time.monotonic() - started < 2.0
        dribbler.settimeout(TIMEOUT)
        reply = json.loads(dribbler.recv(65536))  # it never finished its line: cut off at the deadline
        assert reply["ok"] is False and "within 5 s" in reply["error"]
    finally:
        stop.set()
        thread.join(TIMEOUT)
        for conn in [*silent, dribbler]:
            conn.close()
    still_serves(core)
