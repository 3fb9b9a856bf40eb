"""Runtime sessions created the way the agent of the source tree creates them, for either agent API.

The benchmarks run the bare runtime and the in-process loop through the agent's own backend classes, so
threads, graph optimisation and spinning are the agent's on every side. Two backend APIs exist: the one
of this tree (`backend.load(folder, threads)`, ORT spinning at its default, on) and the hardened agent's
(`backend.load(verified_package, RuntimeSettings)`, spinning off unless `--spin`); whichever the tree on
PYTHONPATH has is used, with its defaults, as `python -m agent` would. `onnx_session(..., spin=)` makes a
session with the same options but spinning as asked (to show what spinning does, or to match another
tree's agent).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def _settings(threads: int) -> Any | None:
    from agent import backends

    factory = getattr(backends, "RuntimeSettings", None)
    return None if factory is None else factory(threads=threads)


def agent_spins(threads: int) -> bool:
    """Whether the tree's agent lets ONNX Runtime's intra-op threads spin, by default."""
    settings = _settings(threads)
    return True if settings is None else bool(settings.spin)  # this tree's agent leaves ORT's default: on


def load_package(folder: Path, threads: int) -> Any:
    """The package in folder loaded by the backend the agent would pick for it."""
    import agent.backends

    backends: Any = agent.backends  # either API (see the module docstring)

    settings = _settings(threads)
    if settings is None:
        return backends.detect(folder).load(folder, threads)
    from agent.package import read_package

    package = read_package(folder.parent, folder.resolve(), frozenset({os.getuid(), 0}))
    try:
        return backends.for_format(package.manifest.format).load(package, settings)
    finally:
        getattr(package, "close", lambda: None)()  # a tree whose packages hold their files open


def onnx_session(model: bytes, threads: int, spin: bool | None = None) -> Any:
    """An ONNX Runtime session over a serialized model: of the agent's backend class with the agent's
    defaults (spin None), or with the agent's options but spinning as given."""
    if spin is not None:
        return _explicit(model, threads, spin)
    from agent.backends import onnxruntime_backend

    session: Any = onnxruntime_backend.OrtSession  # either API (see the module docstring)
    settings = _settings(threads)
    if settings is not None:
        return session(model, "a model in memory", settings)
    with tempfile.NamedTemporaryFile(suffix=".onnx") as file:  # this tree's class reads a file
        file.write(model)
        file.flush()
        return session(Path(file.name), threads)


class _Session:
    """The `run(inputs)` of the agent's sessions over a plain InferenceSession."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, inputs: dict[str, Any]) -> Any:
        return self._session.run(None, inputs)


def _explicit(model: bytes, threads: int, spin: bool) -> _Session:
    import onnxruntime

    options = onnxruntime.SessionOptions()  # the agent backend's options, spinning as asked
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return _Session(onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"]))
