"""Runtime backends behind one small interface, in a registry keyed by name.

A backend recognises a model folder (`detect`) and loads it into a `Session` that runs numpy arrays.
Backends import their runtime lazily, so a device only needs the runtime it uses; a missing runtime
raises BackendUnavailableError naming the extra to install. Adding a runtime = one module + one
`register()` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agent_client.errors import BackendError
from agent_client.tensors import TensorInfo


class Session(Protocol):
    """A loaded model. run() must be safe to call from several threads at once."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def detect(self, folder: Path) -> bool:
        """True when folder holds a model this backend loads."""
        ...

    def load(self, folder: Path, threads: int) -> Session: ...


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str  # imported on first use: "agent.backends.onnxruntime_backend"
    extra: str  # pip extra that installs the runtime


_REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    _REGISTRY[entry.name] = entry


# detect() asks in this order: a Neo-compiled folder is recognised by three named files, before any *.onnx.
register(BackendEntry("dlr", "agent.backends.dlr_backend", "dlr"))
register(BackendEntry("onnxruntime", "agent.backends.onnxruntime_backend", "onnx"))


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Backend:
    """The backend registered under name; BackendError listing valid names for an unknown one."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; known backends: {', '.join(_REGISTRY)}") from None
    backend: Backend = importlib.import_module(entry.module).BACKEND
    return backend


def detect(folder: Path) -> Backend:
    """The first registered backend that recognises folder."""
    for name in _REGISTRY:
        backend = get(name)
        if backend.detect(folder):
            return backend
    raise BackendError(
        f"no backend recognises the model folder {folder}: expected one .onnx file (onnxruntime) "
        f"or a Neo-compiled folder (compiled.so, compiled_model.json, compiled.params)"
    )
