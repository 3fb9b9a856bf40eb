"""The agent's ONNX Runtime sessions: intra-op spinning off unless asked for, the runtime imported as soon
as the agent listens (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends.onnxruntime_backend import OrtSession
from agent.server import AgentOptions, AgentServer

from ..helpers import ROOT

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


WARM_UP = """
import sys, time
from pathlib import Path
from agent.server import AgentOptions, AgentServer

server = AgentServer(AgentOptions(socket=Path(sys.argv[1]), models_root=Path(sys.argv[2])))
assert "onnxruntime" not in sys.modules, "imported before the agent started"
server.start()
deadline = time.monotonic() + 60
while "onnxruntime" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.01)
print("onnxruntime" in sys.modules, "dlr" in sys.modules, server.registry.all())
server.stop(grace=1.0)
"""


def test_the_agent_imports_onnx_runtime_once_it_listens_and_not_dlr(
    models_root: Path, socket_path: Path
) -> None:
    """The first LoadModel, usually from a component still starting, no longer waits for ONNX Runtime's
    import (150 ms of a 0.26 s first LoadModel); a runtime no package asked for (DLR) stays unimported."""
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP, str(socket_path), str(models_root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "()"]  # ORT imported, DLR not, no model loaded
