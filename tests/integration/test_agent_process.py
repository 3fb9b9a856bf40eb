"""The agent as a process: graceful SIGTERM, its socket file, a second agent on the same socket."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from agent_client import AgentClient, ClientOptions

from ..helpers import agent_process, run_module, stop_process

pytestmark = pytest.mark.integration


def test_sigterm_stops_gracefully_and_removes_the_socket(socket_path: Path, models_root: Path) -> None:
    with agent_process(socket_path, models_root, "--load", "tiny=tiny") as proc:
        with AgentClient(socket_path, ClientOptions(timeout=5)) as client:
            assert [m.name for m in client.list_models()] == ["tiny"]
        assert stop_process(proc, signal.SIGTERM) == 0
    assert not socket_path.exists()


def test_a_second_agent_on_a_live_socket_refuses_to_start(socket_path: Path, models_root: Path) -> None:
    with agent_process(socket_path, models_root):
        second = run_module("agent", "--socket", str(socket_path), "--models-root", str(models_root))
        assert second.returncode == 2
        assert "another process is serving" in second.stderr
        with AgentClient(socket_path, ClientOptions(timeout=5)) as client:
            assert client.list_models() == ()  # the first agent still serves


def test_a_stale_socket_file_left_by_a_dead_agent_is_replaced(socket_path: Path, models_root: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))
    dead.close()  # the file stays, nothing listens: what a SIGKILLed agent leaves behind
    with (
        agent_process(socket_path, models_root),
        AgentClient(socket_path, ClientOptions(timeout=5)) as client,
    ):
        assert client.list_models() == ()


def test_bad_options_exit_with_a_message(socket_path: Path, tmp_path: Path) -> None:
    result = run_module("agent", "--socket", str(socket_path), "--models-root", str(tmp_path / "no"))
    assert result.returncode == 2
    assert "is not a folder; pass --models-root" in result.stderr
