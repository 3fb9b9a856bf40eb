"""The agent as a process: graceful SIGTERM, its socket file, a second agent on the same socket."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from agent_client import AgentClient, ClientOptions
from agent_client.errors import AgentTimeoutError

from ..helpers import MODEL_DIR, agent_process, run_module, stop_process

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


def test_a_frozen_agent_still_gives_a_timeout_for_a_large_request_within_the_deadline(
    socket_path: Path,
) -> None:
    """SIGSTOP leaves the socket open and unread: a 600 kB request fills its buffer, where gRPC's own deadline
    never fires (measured: blocked for good). The client's own bound turns it into AgentTimeoutError."""
    frame = np.zeros((4, 224, 224, 3), np.uint8)  # 4 frames of the bundled model's uint8 input: 602 kB
    with (
        agent_process(socket_path, MODEL_DIR.parent) as agent,
        AgentClient(socket_path, ClientOptions(timeout=1.0)) as client,
    ):
        client.load_model(str(MODEL_DIR), "lite0")
        client.predict("lite0", {"input": frame})
        agent.send_signal(signal.SIGSTOP)
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(AgentTimeoutError, match="did not answer within 1 s"):
                    client.predict("lite0", {"input": frame})
                assert time.monotonic() - started < 3.0
        finally:
            agent.send_signal(signal.SIGCONT)
        (scores,) = client.predict("lite0", {"input": frame})  # the same client goes on once it runs
    assert scores.shape == (4, 1000)


def test_predicts_sent_ahead_to_a_frozen_agent_time_out_within_their_deadline(socket_path: Path) -> None:
    """A Predict sent ahead always goes through `.future()`, so the client's own bound holds for it too,
    for two at once; the same client goes on once the agent runs."""
    frame = np.zeros((1, 224, 224, 3), np.uint8)  # one frame of the bundled model: 150 kB
    with (
        agent_process(socket_path, MODEL_DIR.parent) as agent,
        AgentClient(socket_path, ClientOptions(timeout=1.0)) as client,
    ):
        client.load_model(str(MODEL_DIR), "lite0")
        (expected,) = client.predict("lite0", {"input": frame})
        agent.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            sent = [client.send_predict("lite0", {"input": frame}) for _ in range(2)]
            for one in sent:
                with pytest.raises(AgentTimeoutError):
                    one.result()
            assert time.monotonic() - started < 3.0
        finally:
            agent.send_signal(signal.SIGCONT)
        (scores,) = client.send_predict("lite0", {"input": frame}).result()
    np.testing.assert_array_equal(scores, expected)


def test_closing_the_client_while_a_request_is_stuck_in_a_frozen_agent_returns(socket_path: Path) -> None:
    """gRPC's close waits for every unfinished request; one stuck in a frozen agent's socket never finishes
    (measured: close blocked for good), so the client bounds the wait."""
    frame = np.zeros((4, 224, 224, 3), np.uint8)  # 602 kB, as above
    with agent_process(socket_path, MODEL_DIR.parent) as agent:
        client = AgentClient(socket_path, ClientOptions(timeout=1.0))
        client.load_model(str(MODEL_DIR), "lite0")
        agent.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(AgentTimeoutError):
                client.predict("lite0", {"input": frame})
            started = time.monotonic()
            client.close(timeout=1.0)
            assert time.monotonic() - started < 2.0
        finally:
            agent.send_signal(signal.SIGCONT)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --models-root"),
        (["--models-root", "{models}", "--load", "tiny"], "'tiny' is not NAME=FOLDER"),
        (["--models-root", "{models}", "--threads", "0"], "0 is less than 1"),
        (["--models-root", "{models}", "--workers", "many"], "'many' is not a whole number"),
        (["--models-root", "{models}", "--socket-group", "no-such-group"], "no group named 'no-such-group'"),
        (["--models-root", "{models}", "--max-inflight-mb", "8"], "must be at least --max-message-mb (32)"),
        (["--models-root", "{models}", "--load", "m=missing"], "does not exist or is not a folder"),
        (["--models-root", "{models}", "--load", "bad_name=tiny"], "model name 'bad_name' is invalid"),
        (["--models-root", "{models}", "--socket", "/etc/hostname/agent.sock"], "refusing to serve in"),
        (["--models-root", "{models}", "--socket", "/tmp/" + "s" * 110], "longer than 107 bytes"),
        (["--models-root", "{models}", "--capture-dir", "/etc/hostname/captures"], "capture folder"),
    ],
)
def test_a_missing_or_wrong_option_is_a_message_and_exit_2_never_a_traceback(
    socket_path: Path, models_root: Path, args: list[str], message: str
) -> None:
    argv = [a.replace("{models}", str(models_root)) for a in args]
    if "--socket" not in argv:
        argv += ["--socket", str(socket_path)]
    done = run_module("agent", *argv)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert message in done.stderr


def test_help_describes_the_hardening_options() -> None:
    done = run_module("agent", "--help")
    assert done.returncode == 0
    for option in ("--socket-group", "--trusted-uid", "--spin", "--max-concurrent-rpcs", "--max-inflight-mb"):
        assert option in done.stdout
    assert "manifest.json listing every file's sha256" in done.stdout


def test_a_frozen_agent_gives_a_timeout_for_a_small_request_on_the_blocking_path(
    socket_path: Path, models_root: Path
) -> None:
    """Small requests skip `.future()`; gRPC's own deadline still holds for them (they fit the socket
    buffer)."""
    x = {"x": np.zeros((1, 4), np.float32)}
    with (
        agent_process(socket_path, models_root, "--load", "tiny=tiny") as agent,
        AgentClient(socket_path, ClientOptions(timeout=1.0)) as client,
    ):
        client.predict("tiny", x)
        agent.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(AgentTimeoutError, match="reachable but slow"):
                client.predict("tiny", x)
            assert time.monotonic() - started < 3.0
        finally:
            agent.send_signal(signal.SIGCONT)
        (y,) = client.predict("tiny", x)
    assert y.shape == (1, 4)
