"""Someone else on the device (issue 11): a fake agent on the socket path, a stale socket of another user,
socket folders other users can write. Real agents; a real impostor process running as another user (which
needs root)."""

from __future__ import annotations

import grp
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions
from agent_client.errors import AgentUntrustedError, ConfigError
from agent_client.sockets import check_socket_folder, default_trusted_uids

from ..agent_fixtures import fake_agent, other_uid, shared_folder
from ..helpers import ROOT, run_module, wait_for_agent

pytestmark = pytest.mark.integration


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_folder() as folder:
        yield folder


def _agent(socket_path: Path, models_root: Path, **options: object) -> AgentServer:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=models_root, **options))  # type: ignore[arg-type]
    server.start()
    return server


def test_a_fake_agent_of_another_user_on_the_socket_gets_nothing(shared: Path, models_root: Path) -> None:
    """Before: the client streamed frames to the impostor and took its answers ("toilet tissue" 1.0)."""
    path = shared / "aws.greengrass.SageMakerEdgeManager.sock"
    with fake_agent(path, other_uid()) as impostor:
        with AgentClient(path, ClientOptions(timeout=2)) as client:
            with pytest.raises(AgentUntrustedError) as err:
                client.wait_until_ready(2)
            with pytest.raises(AgentUntrustedError):
                client.predict("lite0", {"input": np.zeros((1, 3, 224, 224), np.float32)})
        message = str(err.value)
        assert f"served by pid {impostor.pid} running as uid {other_uid()} (nobody)" in message
        assert "another local user may be impersonating the agent; nothing was sent" in message
        assert "ClientOptions.trusted_uids" in message
    assert impostor.calls == []


def test_an_impostor_that_takes_the_name_after_the_agent_stops_is_refused_at_the_next_call(
    shared: Path, models_root: Path
) -> None:
    path = shared / "agent.sock"
    server = _agent(path, models_root)
    with AgentClient(path, ClientOptions(timeout=2, retries=0)) as client:
        client.wait_until_ready(5)
        assert client.list_models() == ()
        server.stop(grace=0.5)
        with fake_agent(path, other_uid()) as impostor, pytest.raises(AgentUntrustedError, match="nobody"):
            client.list_models()
    assert impostor.calls == []


def test_a_user_the_client_is_told_to_trust_may_serve(shared: Path) -> None:
    path = shared / "agent.sock"
    with fake_agent(path, other_uid()) as impostor:
        options = ClientOptions(timeout=2, trusted_uids=default_trusted_uids({other_uid()}))
        with AgentClient(path, options) as client:
            assert client.list_models() == ()
    assert impostor.calls == ["ListModels"]


def test_an_agent_outside_the_trusted_uids_is_refused(agent: AgentServer) -> None:
    """The check is the client's own: its own uid counts only while it is in trusted_uids."""
    options = ClientOptions(timeout=2, trusted_uids=frozenset({other_uid()}))
    with AgentClient(agent.options.socket, options) as client, pytest.raises(AgentUntrustedError):
        client.list_models()


def test_a_socket_file_owned_by_another_user_is_refused(agent: AgentServer) -> None:
    os.chown(agent.options.socket, other_uid(), -1)
    who = r"belongs to uid \d+ \(nobody\), served by pid \d+ running as uid 0 \(root\), not to a trusted user"
    refused = pytest.raises(AgentUntrustedError, match=who)
    with AgentClient(agent.options.socket, ClientOptions(timeout=2)) as client, refused:
        client.list_models()


def test_the_client_refuses_a_socket_folder_others_may_write_without_the_sticky_bit(
    agent: AgentServer,
) -> None:
    os.chmod(agent.options.socket.parent, 0o777)
    refused = pytest.raises(AgentUntrustedError, match=r"writable by other users .* and not sticky")
    with AgentClient(agent.options.socket, ClientOptions(timeout=2)) as client, refused:
        client.list_models()


def test_the_client_warns_once_about_a_sticky_shared_folder_and_goes_on(
    shared: Path, models_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _agent(shared / "agent.sock", models_root)
    try:
        with (
            caplog.at_level(logging.WARNING, "agent_client.client"),
            AgentClient(shared / "agent.sock", ClientOptions(timeout=2)) as client,
        ):
            for _ in range(3):
                assert client.list_models() == ()
    finally:
        server.stop(grace=0.5)
    warnings = [r for r in caplog.records if r.name == "agent_client.client"]
    assert len(warnings) == 1 and "a folder every user may write" in warnings[0].getMessage()


def test_the_agent_refuses_to_serve_in_a_folder_others_may_write_without_the_sticky_bit(
    socket_path: Path, models_root: Path
) -> None:
    socket_path.parent.chmod(0o777)
    with pytest.raises(ConfigError, match=r"refusing to serve in .* writable by other users .* not sticky"):
        _agent(socket_path, models_root)
    assert not socket_path.exists()


def test_the_agent_refuses_a_socket_folder_of_another_user(socket_path: Path, models_root: Path) -> None:
    os.chown(socket_path.parent, other_uid(), -1)
    with pytest.raises(ConfigError, match=r"belongs to uid \d+ \(nobody\)"):
        _agent(socket_path, models_root)


def test_a_stale_socket_of_another_user_is_a_clear_error_with_exit_2(shared: Path, models_root: Path) -> None:
    """Before: a traceback. The agent cannot remove it (sticky folder) and must not serve beside it."""
    path = shared / "aws.greengrass.SageMakerEdgeManager.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    os.chown(path, other_uid(), -1)
    done = run_module("agent", "--socket", str(path), "--models-root", str(models_root))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{path} is a socket left by another user (uid {other_uid()} (nobody))" in done.stderr
    assert "ask that user or root to remove it, or choose another socket path" in done.stderr


def test_a_live_impostor_on_the_path_keeps_the_agent_from_starting_with_a_message(
    shared: Path, models_root: Path
) -> None:
    path = shared / "agent.sock"
    with fake_agent(path, other_uid()) as impostor:
        done = run_module("agent", "--socket", str(path), "--models-root", str(models_root))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"another process is serving on {path} (pid {impostor.pid}, uid {other_uid()} (nobody))"
        in done.stderr
    )


def test_the_agent_creates_its_socket_folder_owner_only(tmp_path: Path, models_root: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp")) / "run" / "agent"
    server = _agent(folder / "agent.sock", models_root)
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "agent.sock").stat().st_mode) == 0o600
        assert check_socket_folder(folder, default_trusted_uids()).problem is None
    finally:
        server.stop(grace=0.5)
        shutil.rmtree(folder.parent.parent)


def _connects_as_other_user(path: Path) -> str:
    """connect() to path from a process running as nobody (group nogroup): "connected" or the error."""
    script = (
        "import os, socket, sys\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(int(sys.argv[2]))\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n    s.connect(sys.argv[1]); print('connected')\n"
        "except OSError as e:\n    print(e.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(other_uid())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def test_only_the_socket_group_may_connect_through_a_0750_folder_and_a_0660_socket(models_root: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp"))
    base.chmod(0o755)
    group = grp.getgrnam("nogroup").gr_gid
    try:
        private = _agent(base / "private" / "agent.sock", models_root)
        try:
            assert _connects_as_other_user(base / "private" / "agent.sock") == "Permission denied"
        finally:
            private.stop(grace=0.5)
        folder = base / "grouped"
        server = _agent(folder / "agent.sock", models_root, socket_group=group)
        try:
            info, sock = folder.stat(), (folder / "agent.sock").stat()
            assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o750, group)
            assert (stat.S_IMODE(sock.st_mode), sock.st_gid) == (0o660, group)
            assert _connects_as_other_user(folder / "agent.sock") == "connected"
        finally:
            server.stop(grace=0.5)
    finally:
        shutil.rmtree(base)


LITE_CORE_UID = 980  # stands for ggcore, the user nucleus lite runs as, which owns /var/lib/greengrass


@pytest.fixture
def lite_layout(models_root: Path) -> Iterator[Path]:
    """Nucleus lite's layout: the Greengrass root owned by the core's user (0755), work/ root:core 0755, the
    agent's work folder its own; yields the agent's work folder."""
    root = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp")) / "greengrass"
    work = root / "work" / "edgeclassifier.Agent"
    work.mkdir(parents=True)
    os.chown(root, LITE_CORE_UID, LITE_CORE_UID)
    os.chown(root / "work", 0, LITE_CORE_UID)
    for folder in (root.parent, root, root / "work", work):
        folder.chmod(0o755)
    try:
        yield work
    finally:
        shutil.rmtree(root.parent)


def test_on_lites_layout_the_agent_trusts_the_cores_user_only_under_that_core(
    lite_layout: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folders above the default socket belong to the core's user: refused outside Greengrass (who owns
    them is not known to be trusted), served under it (EDGECLASSIFIER_GG_ROOT names the core's root), and the
    component's client, given the same root, trusts the agent serving there."""
    socket_path = lite_layout / "agent.sock"
    command = ("agent", "--socket", str(socket_path), "--models-root", str(models_root))
    refused = run_module(*command, timeout=30)
    assert refused.returncode == 2 and f"belongs to uid {LITE_CORE_UID}" in refused.stderr
    monkeypatch.setenv("EDGECLASSIFIER_GG_ROOT", str(lite_layout.parent.parent))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    agent = subprocess.Popen(
        [sys.executable, "-m", *command], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_agent(socket_path)
        with AgentClient(socket_path, ClientOptions(timeout=5.0)) as client:
            assert client.list_models() == ()
        monkeypatch.delenv("EDGECLASSIFIER_GG_ROOT")
        with (
            AgentClient(socket_path, ClientOptions(timeout=5.0)) as outsider,
            pytest.raises(AgentUntrustedError),
        ):
            outsider.list_models()  # not under that core: the folders' owner is not trusted
    finally:
        agent.terminate()
        _, stderr = agent.communicate(timeout=30)
    assert f"trusting uid 0 (root), uid {LITE_CORE_UID}" in stderr
