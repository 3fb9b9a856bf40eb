"""The agent's ONNX Runtime sessions: intra-op spinning off unless asked for (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends.onnxruntime_backend import OrtSession
from agent.server import AgentOptions, AgentServer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("spin", "entry"), [(False, "0"), (True, "1")])
def test_intra_op_spinning_follows_the_spin_option(
    models_root: Path, socket_path: Path, spin: bool, entry: str
) -> None:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=models_root, spin=spin))
    server.start()
    try:
        session = server.registry.load("tiny", "tiny").session
        assert isinstance(session, OrtSession)
        options = session.session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
    finally:
        server.stop(grace=1.0)
