"""Runtime backends behind one small interface, in a registry keyed by name.

A backend loads a verified model package (agent.package.VerifiedPackage: the manifest and every file held
open as it was checked against its digest) into a `Session` that runs numpy arrays. The manifest's
`format` picks the backend ("onnx" -> onnxruntime, "neo" -> dlr). Backends import their runtime lazily,
so a device only needs the runtime it uses; a missing runtime raises BackendUnavailableError naming the
extra to install.
The runtime of the bundled packages (ONNX Runtime, `warm`) is imported by `warm_up()`, which the agent runs
on a thread once it listens: the first LoadModel, usually sent by a component still starting itself, then
does not wait for that import (measured: 150 ms of a 0.26 s first LoadModel). The others are imported at
their first load, so an agent that never loads them never holds them.
Adding a runtime = one module + one `register()` line below.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from agent_client.errors import BackendError
from agent_client.tensors import TensorInfo

if TYPE_CHECKING:
    from ..package import VerifiedPackage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeSettings:
    """threads: intra-op threads per model; spin: let idle runtime threads spin-wait for work (ONNX Runtime's
    session.intra_op.allow_spinning; see agent.backends.onnxruntime_backend for what it costs)."""

    threads: int = 2
    spin: bool = False


class Cancellation:
    """Set when the caller of a request has gone (deadline passed, call cancelled). Backends register what
    stops a run in progress; a callback registered after cancel() runs at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class Session(Protocol):
    """A loaded model. run() must be safe to call from several threads at once."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def run(
        self, inputs: Mapping[str, np.ndarray], cancel: Cancellation | None = None
    ) -> Sequence[np.ndarray]:
        """The outputs in model order; RequestCancelledError when cancel fired and the run was stopped."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def warm_up(self) -> None:
        """Pays the runtime's one-time costs (its import) ahead of a first load; raises nothing (a runtime
        that is missing is for load to report)."""
        ...

    def load(self, package: VerifiedPackage, settings: RuntimeSettings) -> Session: ...


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str  # imported on first use: "agent.backends.onnxruntime_backend"
    extra: str  # pip extra that installs the runtime
    format: str  # the manifest format it loads
    warm: bool = False  # warmed up when the agent starts (see warm_up)


_REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    _REGISTRY[entry.name] = entry


register(BackendEntry("dlr", "agent.backends.dlr_backend", "dlr", "neo"))
register(BackendEntry("onnxruntime", "agent.backends.onnxruntime_backend", "onnx", "onnx", warm=True))


def warm_up() -> None:
    """Warms up the backends registered `warm` (see the module docstring); raises nothing."""
    for entry in _REGISTRY.values():
        if entry.warm:
            try:
                get(entry.name).warm_up()
            except Exception:  # a backend that cannot even be imported fails its loads, with the reason
                logger.debug("backend %s could not be warmed up", entry.name, exc_info=True)


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


def for_format(model_format: str) -> Backend:
    """The backend that loads packages of a manifest format."""
    for entry in _REGISTRY.values():
        if entry.format == model_format:
            return get(entry.name)
    known = ", ".join(f"{e.format} ({e.name})" for e in _REGISTRY.values())
    raise BackendError(f"no backend loads model format {model_format!r}; formats: {known}")
