from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions

from .helpers import write_tiny_model


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A unix socket path in a fresh folder under /tmp, short enough for the 107-byte limit; removed after."""
    folder = Path(tempfile.mkdtemp(prefix="gg-", dir="/tmp"))
    yield folder / "agent.sock"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_tiny_model(root / "tiny")
    write_tiny_model(root / "tiny-dynamic", batch="N")
    return root


@pytest.fixture
def agent(models_root: Path, tmp_path: Path, socket_path: Path) -> Iterator[AgentServer]:
    """A real agent serving gRPC on a temp unix socket, in this process."""
    options = AgentOptions(
        socket=socket_path,
        models_root=models_root,
        capture_dir=tmp_path / "capture",
        max_message_bytes=4 * 1024 * 1024,
    )
    server = AgentServer(options)
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def client(agent: AgentServer) -> Iterator[AgentClient]:
    with AgentClient(agent.options.socket, ClientOptions(timeout=5.0)) as c:
        c.wait_until_ready(5.0)
        yield c
